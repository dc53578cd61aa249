"""Consistent private copies of the catalog, so that serving never holds the store's file.

DuckDB's file lock lets a writer in one process shut out readers in another and the reverse; a
server that kept the catalog open — or opened it for every request under load — would starve an
ingest's commit. The server instead copies ``catalog.duckdb`` (and its WAL, if any) while holding a
read-only connection for the few milliseconds of the copy — so no commit is half-written in the
copy — and answers every request from the newest copy, opened read-only per request. A new copy
is taken when the catalog's files change, so a commit shows up atomically at the next request:
each query sees the views of one committed state.

Each copy has one read-only connection, confined to the store's files once (DuckDB shares a
database instance between the connections of a process, and a locked configuration cannot be set
again); requests query through cursors of it, one per request.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import NamedTuple

import duckdb

from quanta_db.store import catalog, sandbox

KEEP = 3  # older copies may still be open by running requests


class Snapshot(NamedTuple):
    connection: duckdb.DuckDBPyConnection  # read-only, confined to the store's files
    generation: int
    macros: frozenset[str]  # the store's saved analyses in this copy (for the statement check)


class Snapshots:
    def __init__(self, root: Path, memory_limit: str | None = None):
        self.root = Path(root)
        self.memory_limit = memory_limit
        self.folder = Path(tempfile.mkdtemp(prefix="quanta-db-serve-"))
        self._lock = threading.Lock()
        self._stamp = None
        self._generation = 0
        self._current: Path | None = None
        self._connections: dict[int, Snapshot] = {}

    def _files(self) -> list[Path]:
        path = catalog.catalog_path(self.root)
        return [path, path.with_name(path.name + ".wal")]

    def _signature(self) -> tuple:
        return tuple(_stamp(p) for p in self._files())

    def current(self) -> Snapshot:
        """The newest copy, taken first when the catalog changed."""
        with self._lock:
            stamp = self._signature()
            if stamp != self._stamp or self._current is None:
                self._generation += 1
                target = self.folder / f"catalog-{self._generation}.duckdb"
                with catalog.connect(self.root, read_only=True):  # no writer can commit during the copy
                    for source in self._files():
                        if source.exists():
                            shutil.copyfile(source, target.with_name(target.name + source.name[len("catalog.duckdb"):]))
                    stamp = self._signature()
                self._current, self._stamp = target, stamp
                connection = duckdb.connect(str(target), read_only=True)
                sandbox.restrict(connection, self.root, self.memory_limit)
                self._connections[self._generation] = Snapshot(connection, self._generation,
                                                               sandbox.table_macros(connection))
                for generation in [g for g in self._connections if g <= self._generation - KEEP]:
                    self._connections.pop(generation).connection.close()
                for old in sorted(self.folder.glob("catalog-*.duckdb*")):
                    if int(old.name.split("-")[1].split(".")[0]) <= self._generation - KEEP:
                        old.unlink(missing_ok=True)
            return self._connections[self._generation]

    def close(self) -> None:
        with self._lock:
            for snapshot in self._connections.values():
                snapshot.connection.close()
            self._connections.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def _stamp(path: Path) -> tuple[int, int] | None:
    """(mtime, size) of ``path``, None when absent — one stat, because a committing ingest removes
    the WAL between an exists() and a stat() (a served request failed with FileNotFoundError)."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_mtime_ns, status.st_size
