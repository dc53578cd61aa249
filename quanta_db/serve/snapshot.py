"""Consistent private copies of the catalog, so that serving never holds the store's file.

DuckDB's file lock lets a writer in one process shut out readers in another and the reverse; a
server that kept the catalog open — or opened it for every request under load — would starve an
ingest's commit. The server instead answers every request from a private read-only copy
(``catalog.user_sql_connection``: copied under a read-only connection, so no commit is half-copied;
its file unlinked once open, so user SQL cannot read its bytes). A new copy is taken when the
catalog's files change, so a commit shows up atomically at the next request: each query sees the
views of one committed state.

Each copy is one connection, confined to the store's committed files once (DuckDB shares a
database instance between the cursors of a connection, and a locked configuration cannot be set
again); requests query through cursors of it, one per request.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import duckdb

from quanta_db.errors import QuantaError
from quanta_db.store import catalog, lake, querying, sandbox
from quanta_db.store.store import Store

KEEP = 3  # older copies may still be in use by running requests


class Snapshot(NamedTuple):
    connection: duckdb.DuckDBPyConnection  # a read-only copy, confined to the store's files
    generation: int
    macros: frozenset[str]  # the store's saved analyses in this copy (for the statement check)


class Snapshots:
    def __init__(self, root: Path, memory_limit: str | None = None):
        self.root = Path(root)
        self.memory_limit = memory_limit
        self._lock = threading.Lock()
        self._stamp = None
        self._generation = 0
        self._connections: dict[int, Snapshot] = {}

    def _signature(self) -> tuple:
        return catalog.change_stamp(self.root)

    def current(self) -> Snapshot:
        """The newest copy, taken first when the catalog changed."""
        with self._lock:
            # Stamped before copying: a commit landing during the copy changes the stamp again, so
            # the next request copies anew rather than keeping a copy older than its stamp.
            stamp = self._signature()
            if stamp != self._stamp or not self._connections:
                connection = catalog.user_sql_connection(self.root, self.memory_limit)
                self._generation += 1
                self._stamp = stamp
                self._connections[self._generation] = Snapshot(connection, self._generation,
                                                               sandbox.table_macros(connection))
                for generation in [g for g in self._connections if g <= self._generation - KEEP]:
                    self._connections.pop(generation).connection.close()
            return self._connections[self._generation]

    def close(self) -> None:
        with self._lock:
            for snapshot in self._connections.values():
                snapshot.connection.close()
            self._connections.clear()


class SnapshotStore(Store):
    """The store as one snapshot shows it, for the report renderers: catalog reads and queries run
    on the snapshot's private copy (confined to the committed files), queries under the server's
    time limit, so a served report never opens the store's catalog; Parquet files are read as
    by any :class:`Store`. Nothing can be written through it."""

    def __init__(self, root: Path, snapshot: Snapshot, time_limit_ms: int | None):
        super().__init__(root)
        self._snapshot, self._time_limit_ms = snapshot, time_limit_ms

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cursor = lake.cursor(self._snapshot.connection)
        try:
            yield cursor
        finally:
            cursor.close()

    def write(self):
        raise QuantaError("a served store is read-only")

    def query(self, sql: str, params: list | None = None, unsafe: bool = False, time_limit_ms: int | None = None,
              max_rows: int | None = None) -> querying.Result:
        return querying.run(self._snapshot.connection, sql, params, time_limit_ms or self._time_limit_ms, max_rows,
                            None if unsafe else self._snapshot.macros)
