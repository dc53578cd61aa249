"""Consistent private copies of the catalog, confined to the store's files, kept open for the
queries of one process.

User SQL is answered from a private read-only copy of the catalog
(``catalog.user_sql_connection``: a copy of the readers' copy, or on PostgreSQL a connection
pinned to one snapshot; a local copy's file is unlinked once open, so user SQL cannot read its
bytes). Opening one costs more the more files the store holds (DuckDB's ``allowed_paths`` takes
about 13 µs a path), so each process keeps its newest copy and takes a new one only when the
catalog's change stamp moves: a commit shows up atomically, and each query sees the views of
one committed state.

Each copy is one connection, confined to the store's committed files once (DuckDB shares a
database instance between the cursors of a connection, and a locked configuration cannot be set
again); queries run on cursors of it, one per query.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

import duckdb

from quanta_db.store import catalog, sandbox

KEEP = 3  # older copies may still be in use by running requests


class Snapshot(NamedTuple):
    connection: duckdb.DuckDBPyConnection  # a read-only copy, confined to the store's files
    generation: int
    macros: frozenset[str]  # the store's saved analyses in this copy (for the statement check)


class Snapshots:
    """The confined copies of one store for this process's queries.

    ``background``: when a commit from another process lands, keep answering from the copy of
    the state before it while the next copy is taken in a thread (a served page is never held up
    by a commit; it shows the commit a copy's time later, 0.5 s at 25,000 files). Without it, and
    always after a commit by this process, the next query waits for the new copy: it sees every
    commit that landed before it started.
    """

    def __init__(self, root: Path, memory_limit: str | None = None, background: bool = False):
        self.root = Path(root)
        self.memory_limit = memory_limit
        self.background = background
        self._lock = threading.Lock()
        self._stamp = None
        self._own_writes = None
        self._generation = 0
        self._connections: dict[int, Snapshot] = {}
        self._taking: threading.Thread | None = None
        self._closed = False

    def _signature(self) -> tuple:
        return catalog.change_stamp(self.root)

    def current(self) -> Snapshot:
        """The newest copy; a new one is taken first (or, ``background``, meanwhile) when the
        catalog changed."""
        with self._lock:
            # Stamped before copying: a commit landing during the copy changes the stamp again, so
            # the next request copies anew rather than keeping a copy older than its stamp.
            stamp, own_writes = self._signature(), catalog.writes_in_process()
            if self._connections and stamp == self._stamp:
                return self._connections[self._generation]
            if self._connections and self.background and own_writes == self._own_writes:
                if self._taking is None:
                    self._taking = threading.Thread(target=self._take_meanwhile, args=(stamp, own_writes))
                    self._taking.start()
                return self._connections[self._generation]
            self._keep(self._take(), stamp, own_writes)
            return self._connections[self._generation]

    def _take(self) -> tuple[duckdb.DuckDBPyConnection, frozenset[str]]:
        connection = catalog.user_sql_connection(self.root, self.memory_limit)
        try:
            return connection, sandbox.table_macros(connection)
        except BaseException:
            connection.close()
            raise

    def _take_meanwhile(self, stamp: tuple, own_writes: int) -> None:
        try:
            taken = self._take()
        except Exception:  # noqa: BLE001 - the next query takes the copy itself, and says why it cannot
            taken = None
        with self._lock:
            self._taking = None
            if taken is None:
                self._own_writes = None  # so the next query takes the copy itself
            elif self._closed or own_writes != catalog.writes_in_process():
                taken[0].close()  # closed meanwhile, or older than a commit of this process
            else:
                self._keep(taken, stamp, own_writes)

    def _keep(self, taken: tuple[duckdb.DuckDBPyConnection, frozenset[str]], stamp: tuple, own_writes: int) -> None:
        self._generation += 1
        self._stamp, self._own_writes = stamp, own_writes
        self._connections[self._generation] = Snapshot(taken[0], self._generation, taken[1])
        for generation in [g for g in self._connections if g <= self._generation - KEEP]:
            self._connections.pop(generation).connection.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            taking = self._taking
        if taking is not None:
            taking.join()
        with self._lock:
            for snapshot in self._connections.values():
                snapshot.connection.close()
            self._connections.clear()


MAX_SHARED_STORES = 4  # stores whose copies one process keeps open for Store.query (least recent closed)
_shared: OrderedDict[Path, Snapshots] = OrderedDict()
_shared_lock = threading.Lock()
_shared_pid = os.getpid()


def shared(root: Path) -> Snapshots:
    """This process's copies of the store at ``root`` (kept for :meth:`Store.query`)."""
    global _shared_pid
    root = Path(root)
    with _shared_lock:
        if _shared_pid != os.getpid():  # a forked child must not use its parent's connections
            _shared.clear()
            _shared_pid = os.getpid()
        snapshots = _shared.pop(root, None) or Snapshots(root)
        _shared[root] = snapshots
        while len(_shared) > MAX_SHARED_STORES:
            _shared.popitem(last=False)[1].close()
        return snapshots


def forget(root: Path | None = None) -> None:
    """Close this process's copies of the store at ``root`` (every store's, without one)."""
    with _shared_lock:
        for key in [key for key in _shared if root is None or key == Path(root)]:
            _shared.pop(key).close()
