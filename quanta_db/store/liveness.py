"""Whether the job that owns a staging folder is still alive, on any host.

Every staging folder (a run's staged files, a job's resumable state) holds a marker file,
``run.json``, naming its host and process. While the folder is registered here, a daemon
thread of the owning process refreshes the marker's modification time every 10 seconds
(``QUANTA_DB_HEARTBEAT_S``). ``gc`` judges a folder dead when its heartbeat is older than the
stale threshold (default 5 minutes; ``QUANTA_DB_STALE_AFTER_S``), whatever host wrote it; on
the local host a process that no longer exists is dead at once.

On a shared filesystem the heartbeat's time is the file server's (NFS sets mtime on the
server), while ``gc`` compares it with its own clock: keep the hosts' clocks within a
fraction of the threshold (NTP), or raise the threshold.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from pathlib import Path

from quanta_db.store.settings import env_seconds

MARKER = "run.json"
HEARTBEAT_ENV = "QUANTA_DB_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 10.0
STALE_AFTER_ENV = "QUANTA_DB_STALE_AFTER_S"
DEFAULT_STALE_AFTER_S = 300.0

_registered: set[Path] = set()
_lock = threading.Lock()
_thread: threading.Thread | None = None


def stale_after_s() -> float:
    return env_seconds(STALE_AFTER_ENV, DEFAULT_STALE_AFTER_S)


def write_marker(folder: Path, **fields) -> None:
    """Mark ``folder`` as owned by this live process and keep its heartbeat going."""
    folder.mkdir(parents=True, exist_ok=True)
    marker = {**fields, "pid": os.getpid(), "host": socket.gethostname()}
    (folder / MARKER).write_text(json.dumps(marker))
    keep_alive(folder)


def read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def keep_alive(folder: Path) -> None:
    global _thread
    with _lock:
        _registered.add(Path(folder))
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_beat, name="quanta-db-heartbeat", daemon=True)  # pragma: no mutate  (a name)
            _thread.start()


def let_go(folder: Path) -> None:
    with _lock:
        _registered.discard(Path(folder))


def _beat() -> None:
    while True:
        time.sleep(env_seconds(HEARTBEAT_ENV, DEFAULT_HEARTBEAT_S))
        with _lock:
            folders = list(_registered)
        for folder in folders:
            try:
                os.utime(folder / MARKER)
            except OSError:  # the folder was committed, aborted or removed: stop beating for it
                let_go(folder)


def heartbeat_age_s(folder: Path) -> float:
    try:
        return time.time() - (folder / MARKER).stat().st_mtime
    except OSError:
        return math.inf


def owner_alive(folder: Path) -> bool:
    """Whether the job owning ``folder`` is alive (see the module docstring)."""
    marker = read_marker(folder)
    if marker is None:
        return False
    if marker.get("host") == socket.gethostname() and "pid" in marker:  # else the heartbeat decides
        pid = int(marker["pid"])
        if pid == os.getpid():
            return Path(folder) in _registered
        if not process_exists(pid):
            return False
    return heartbeat_age_s(folder) < stale_after_s()  # pragma: no mutate  (an age of exactly the threshold is not met)


def process_exists(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host: ``kill(pid, 0)`` checks without signalling.
    Another user's process refuses the check (EPERM) and runs: a store shared by several users
    must not take a live job of one for dead in another's ``gc``."""
    if pid <= 0:  # 0 and negative pids name process groups, not a process
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return True
    except (ProcessLookupError, OverflowError):
        return False
    return True
