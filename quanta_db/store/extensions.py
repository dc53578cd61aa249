"""The DuckDB extensions a store needs: DuckLake, and postgres for a catalog on PostgreSQL.

They come as pip wheels pinned to one DuckDB release; DuckDB cannot download them offline, so
each is installed from the file inside its wheel (DuckDB copies it into its extension folder).

DuckDB checks an extension's signature each time it loads it: about 0.1 s for the 36 MB DuckLake
extension, half of what a one-partition query may take. So each installed file is checked once:
after a checked load, the file's identity (device, inode, size, modification and change times)
is recorded in the user's cache folder (``<cache>/quanta-db/verified-extensions.json``), and a
later connection — of this process or another — whose installed file still has that identity
loads exactly that file, by path, without checking again. Replacing or editing the file changes
its identity (its change time at least, which no process can set back), so such a file is
checked again. Processes install (and check) one at a time, under a lock file beside the
record: DuckDB reports another process's install under way by its temporary file. No user
connection can load any other file (they load nothing at all once confined:
:mod:`quanta_db.store.sandbox`).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb

from quanta_db.errors import StoreError
from quanta_db.store.sql import quote_literal, statement

RECORD_FILE = "verified-extensions.json"
INSTALL_LOCK_FILE = "extensions.lock"
_VERIFIED: dict[str, Path] = {}  # extension name → its installed file, checked (now or recorded)


def names(postgres: bool) -> tuple[str, ...]:
    return ("ducklake", "postgres") if postgres else ("ducklake",)


def connection_config(postgres: bool) -> dict:
    """DuckDB settings for a new connection that will attach a lake: signatures are checked
    unless every extension it loads was checked before. DuckDB's autoloading is off: it would
    load an installed file whatever it is now, unchecked on a connection that allows unsigned
    files. (DuckLake loads postgres itself at an attach on PostgreSQL, autoloading or not:
    :func:`load` must have loaded the checked file before.)"""
    checked = all(_checked_file(name) is not None for name in names(postgres))
    return {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
            "allow_unsigned_extensions": checked}


def load(con: duckdb.DuckDBPyConnection, postgres: bool) -> None:
    """Load DuckLake (and postgres) into ``con`` (made with :func:`connection_config`),
    installing each from its wheel the first time."""
    checking = not con.execute(statement("unsigned_extensions_allowed")).fetchone()[0]
    for name in names(postgres):
        if checking:
            with _installing():
                _install_and_load(con, name)
            continue
        checked = _checked_file(name)
        if checked is None:  # changed since con was configured: DuckDB would not check it
            raise StoreError(f"DuckDB's {name} extension file changed while a connection was made; try again")
        con.execute(f"LOAD {quote_literal(str(checked))}")  # the very file whose identity was compared


def _install_and_load(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Install ``name`` from its wheel where it is missing (DuckDB leaves an installed file as it
    is), load it with its signature checked, and record the file checked."""
    con.execute(f"INSTALL {quote_literal(str(wheel_extension(name)))}")
    installed = _installed_file(con, name)
    before = _identity(installed)
    con.execute(f"LOAD {name}")
    if _identity(installed) == before:  # the file loaded is the one recorded
        _record(name, installed)


def _installed_file(con: duckdb.DuckDBPyConnection, name: str) -> Path:
    """The file ``LOAD <name>`` opens, once installed: ``<extension folder>/<canonical
    name>.duckdb_extension``. Not simply the install path DuckDB reports: while another install
    of the extension is under way, or one was killed, its temporary file (``<name>.duckdb_extension
    .tmp-<uuid>.duckdb_extension``) is in the folder, and ``duckdb_extensions()`` reports that."""
    path, canonical = con.execute(statement("extension_installed"), [name, name]).fetchone()
    return Path(path).with_name(f"{canonical}.duckdb_extension")


@contextlib.contextmanager
def _installing() -> Iterator[None]:
    """Install and check extensions one process at a time (the user's lock file beside the
    record): DuckDB lists another process's install under way by its temporary file, and may
    fail on that file's lock. A cache folder that cannot be written means no lock."""
    path = _record_path().with_name(INSTALL_LOCK_FILE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def wheel_extension(name: str) -> Path:
    """The ``.duckdb_extension`` file inside the ``duckdb-extension-<name>`` wheel."""
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    path = None
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations)))
        path = folder / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if path is None or not path.is_file():
        extra = " 'quanta-db[postgres]'" if name == "postgres" else " quanta-db"
        raise StoreError(f"DuckDB's {name} extension for DuckDB {duckdb.__version__} is not installed "
                         f"(pip install{extra})")
    return path


def _identity(path: Path) -> list[int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return [status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns]


def _record_path() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "quanta-db" / RECORD_FILE


def _recorded() -> dict:
    try:
        recorded = json.loads(_record_path().read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _checked_file(name: str) -> Path | None:
    """The installed file of extension ``name`` if its signature was checked (by this process,
    or by one that recorded the same file, unchanged since), else None."""
    if name in _VERIFIED:
        return _VERIFIED[name]
    entry = _recorded().get(f"{duckdb.__version__}/{name}")
    if isinstance(entry, dict) and isinstance(entry.get("path"), str):
        path = Path(entry["path"])
        if entry.get("identity") is not None and _identity(path) == entry.get("identity"):
            _VERIFIED[name] = path
            return path
    return None


def _record(name: str, path: Path) -> None:
    """Remember that ``path`` (extension ``name``) passed DuckDB's signature check; a cache
    folder that cannot be written only means the next process checks again."""
    _VERIFIED[name] = path
    record = _record_path()
    with contextlib.suppress(OSError):
        record.parent.mkdir(parents=True, exist_ok=True)
        entries = _recorded()
        entries[f"{duckdb.__version__}/{name}"] = {"path": str(path), "identity": _identity(path)}
        # written whole beside the record, then renamed over it: a reader sees the old or the new
        with tempfile.NamedTemporaryFile("w", dir=record.parent, delete=False, suffix=".tmp") as handle:  # pragma: no mutate
            json.dump(entries, handle, indent=1)  # pragma: no mutate  (the layout is for people reading it)
        os.replace(handle.name, record)
