"""A third wall for processes that must only read the store: the kernel refuses their writes.

DuckDB's file allowlist cannot tell a read from a write (see :mod:`quanta_db.store.sandbox`), so a
statement that slipped past the statement check could still rewrite a committed file in place.
A process of quanta-db's own that only reads — the ``quanta-db query`` command — asks Linux's
Landlock LSM (kernel ≥ 5.13, unprivileged) to refuse it every filesystem write except under
the paths it names (its ``-o`` file). The restriction covers the calling thread and every thread
and process it starts afterwards (DuckDB's workers included), cannot be lifted, and holds for root.
Where Landlock is missing (another OS, an older kernel) the function says so and does nothing.

Reference: the Landlock user-space API, ``Documentation/userspace-api/landlock.rst``.
"""

from __future__ import annotations

import ctypes
import os
import platform
import stat
import tempfile
from pathlib import Path

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # the same on every architecture
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

WRITE_FILE, REMOVE_DIR, REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
MAKE = sum(1 << bit for bit in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
REFER, TRUNCATE = 1 << 13, 1 << 14
WRITES_BY_ABI = {1: WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE}
WRITES_BY_ABI[2] = WRITES_BY_ABI[1] | REFER
WRITES_BY_ABI[3] = WRITES_BY_ABI[2] | TRUNCATE
FILE_WRITES = WRITE_FILE | TRUNCATE  # the rights a rule on a single file may grant


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, or 0 when there is none."""
    if platform.system() != "Linux":
        return 0
    abi = _libc().syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0),  # pragma: no mutate  (None is 0 too)
                          ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(int(abi), 0)


def _check(result: int, what: str) -> None:
    if result < 0:
        raise OSError(ctypes.get_errno(), f"Landlock {what}: {os.strerror(ctypes.get_errno())}")


def forbid_writes(writable: tuple[str, ...] = ()) -> str:
    """Make the kernel refuse this process (from this thread on) every filesystem write except
    beneath ``writable`` (folders, or existing files). Returns a short description of the wall."""
    abi = landlock_abi()
    if abi < 1:
        return "off (Landlock is not available here)"
    libc = _libc()
    handled = WRITES_BY_ABI[min(abi, 3)]
    attr = _RulesetAttr(handled)
    ruleset = libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                           ctypes.c_uint32(0))
    _check(ruleset, "create_ruleset")
    try:
        for path in writable:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneathAttr(handled if os.path.isdir(path) else handled & FILE_WRITES, fd)
                _check(libc.syscall(SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(RULE_PATH_BENEATH),
                                    ctypes.byref(rule), ctypes.c_uint32(0)), f"add_rule {path}")
            finally:
                os.close(fd)
        _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        _check(libc.syscall(SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0)), "restrict_self")
    finally:
        os.close(ruleset)
    return f"on (Landlock ABI {abi})"


def scratch_folder() -> Path:
    """The folder a walled process of this user may still write (its private catalog copies):
    ``<tmp>/quanta-db-<uid>``, mode 0700, reused by every run so none is left behind (a walled
    process cannot remove a folder it created)."""
    scratch = Path(tempfile.gettempdir()) / f"quanta-db-{os.getuid()}"
    scratch.mkdir(mode=0o700, exist_ok=True)
    status = scratch.lstat()
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid() or status.st_mode & 0o077:
        raise OSError(f"{scratch} is not a private folder of this user; remove it and try again")
    return scratch
