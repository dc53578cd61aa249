"""The store as the server shows it: every request reads one private, confined copy of the
catalog (:mod:`quanta_db.store.snapshots`), so serving never holds the store's file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from quanta_db.errors import QuantaError
from quanta_db.store import querying
from quanta_db.store.snapshots import Snapshot
from quanta_db.store.store import Store


class SnapshotStore(Store):
    """The store as one snapshot shows it, for the report renderers: catalog reads and queries run
    on the snapshot's private copies (confined to the committed files), queries under the server's
    time limit, so a served report never opens the store's catalog; Parquet files are read as
    by any :class:`Store`. Nothing can be written through it."""

    def __init__(self, root: Path, snapshot: Snapshot, time_limit_ms: int | None):
        super().__init__(root)
        self._snapshot, self._time_limit_ms = snapshot, time_limit_ms

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._snapshot.catalog_cursor() as cursor:
            yield cursor

    def write(self):
        raise QuantaError("a served store is read-only")

    def query(self, sql: str, params: list | None = None, unsafe: bool = False, time_limit_ms: int | None = None,
              max_rows: int | None = None) -> querying.Result:
        if unsafe:
            raise QuantaError("a served store runs no unchecked SQL")
        return querying.run_on(self._snapshot, sql, params, time_limit_ms or self._time_limit_ms, max_rows)
