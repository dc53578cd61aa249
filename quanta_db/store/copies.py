"""This process's newest confined copy of each store it queries (a :class:`Snapshot` of the
catalog's current state), taken anew when a commit lands: in the query's own time, or in the
background while queries are answered from the previous copy (as ``serve`` does)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import duckdb

from quanta_db.store import catalog, reach
from quanta_db.store.snapshots import Snapshot

KEEP = 3  # older copies may still be in use by running requests


class Snapshots:
    """The confined copies of one store for this process's queries.

    ``background``: when a commit from another process lands, keep answering from the copy of
    the state before it while the next copy is taken in a thread (a served page is never held up
    by a commit; it shows the commit a copy's time later, about 0.2 s at 25,000 files). Without
    it, and always after a commit by this process, the next query waits for the new copy: it sees
    every commit that landed before it started.
    """

    def __init__(self, root: Path, memory_limit: str | None = None, background: bool = False):
        self.root = Path(root)
        self.memory_limit = memory_limit
        self.background = background
        self._lock = threading.Lock()
        self._stamp = None  # pragma: no mutate  (compared only once a copy was kept, which sets it)
        self._own_writes = None
        self._generation = 0  # pragma: no mutate  (any start: generations are only compared with each other)
        self._snapshots: dict[int, Snapshot] = {}
        self._taking: threading.Thread | None = None
        self._closed = False
        self._plans = reach.Plans()
        self._blank: duckdb.DuckDBPyConnection | None = None  # for the next copy, made ahead
        self._making = False  # the next copy's connection is being made
        # One thread for what a new copy leaves to do: made once, so a query that took a copy
        # hands it work without waiting for a thread to start (3-10 ms on 2 busy cores).
        self._after_work: ThreadPoolExecutor | None = None

    def current(self) -> Snapshot:
        """The newest copy; a new one is taken first (or, ``background``, meanwhile) when the
        catalog changed."""
        newest, retired = self._current()
        self._settle(newest, retired)
        return newest

    @contextmanager
    def for_query(self) -> Iterator[Snapshot]:
        """:meth:`current`, for one query: what a new copy leaves to do in threads (the next
        copy's first connection made ahead, the copies it retired closed) starts once the query
        is done rather than beside it, where on 2 cores it took a third of a polling reader's
        first query after a commit (55 -> 36 ms median at 25,000 files)."""
        newest, retired = self._current()
        try:
            yield newest
        finally:
            self._settle(newest, retired)

    def _current(self) -> tuple[Snapshot, list[Snapshot] | None]:
        """The newest copy, and the copies taking it retired (None: no copy was taken here)."""
        with self._lock:
            # Stamped before copying: a commit landing during the copy changes the stamp again, so
            # the next request copies anew rather than keeping a copy older than its stamp.
            stamp, own_writes = catalog.change_stamp(self.root), catalog.writes_in_process()
            if self._snapshots and stamp == self._stamp:
                return self._snapshots[self._generation], None
            if self._snapshots and self.background and own_writes == self._own_writes:
                if self._taking is None:
                    self._taking = threading.Thread(target=self._take_meanwhile, args=(stamp, own_writes))
                    self._taking.start()
                return self._snapshots[self._generation], None
            retired = self._keep(self._take(stamp, self._pop_blank(), self._snapshots.get(self._generation)),
                                 stamp, own_writes)
            newest = self._snapshots[self._generation]
        return newest, retired

    def _settle(self, newest: Snapshot, retired: list[Snapshot] | None) -> None:
        """What a copy taken by :meth:`_current` leaves to do, in the after-work thread."""
        if retired is None:
            return
        self._make_blank(newest.locator)
        # closed there too (freeing a replaced readers' copy is 6-14 ms of a close), or here once
        # this store's copies were closed
        if retired and not self._in_background(_close_all, retired):
            _close_all(retired)

    def _in_background(self, work, *args) -> bool:
        """Run ``work(*args)`` in this store's after-work thread; False once closed, or once the
        interpreter is exiting (nothing runs: the caller does what must be done itself)."""
        with self._lock:
            if self._closed:
                return False
            if self._after_work is None:
                self._after_work = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quanta-db-after-copy")
            try:
                self._after_work.submit(work, *args)
            except RuntimeError:  # exiting: the executors were shut before this thread was joined
                return False
            return True

    def _take(self, stamp: tuple, blank: duckdb.DuckDBPyConnection | None, previous: Snapshot | None) -> Snapshot:
        return Snapshot(self.root, self.memory_limit, stamp=stamp, plans=self._plans,
                        blank=blank, previous=previous)

    def _pop_blank(self) -> duckdb.DuckDBPyConnection | None:
        """The connection made ahead for the next copy, if ready (under the lock)."""
        blank, self._blank = self._blank, None
        return blank

    def _make_blank(self, locator) -> None:
        """Make the next copy's first connection in a thread now (a new DuckDB database costs
        about 20 ms of what a reader polling through a commit would wait for)."""
        def make() -> None:
            try:
                blank = catalog.blank_connection(locator)
            except Exception:  # noqa: BLE001 - the next copy opens its own, and says why it cannot
                blank = None
            # None was kept meanwhile (one maker at a time, and only one kept), and close() waits
            # for this thread before it closes the one kept
            with self._lock:
                self._making = False
                self._blank = blank

        with self._lock:
            if self._making or self._blank is not None or self._closed:
                return
            self._making = True
        # not run once the copies are closed (or the interpreter exits): then none is made again
        self._in_background(make)

    def _take_meanwhile(self, stamp: tuple, own_writes: int) -> None:
        retired: list[Snapshot] = []
        with self._lock:
            previous = self._snapshots.get(self._generation)
            blank = self._pop_blank()
        try:
            taken = self._take(stamp, blank, previous)
        except Exception:  # noqa: BLE001 - the next query takes the copy itself, and says why it cannot
            taken = None
        else:  # neither raises: a copy made is kept or closed below, never dropped open
            self._make_blank(taken.locator)
            taken.warm(previous.recent() if previous is not None else [])  # pragma: no mutate  (None once closed)
        with self._lock:
            self._taking = None
            if taken is None:
                self._own_writes = None  # pragma: no mutate  (no count equals it: the next query takes the copy itself)
            elif self._closed or own_writes != catalog.writes_in_process():
                taken.close()  # closed meanwhile, or older than a commit of this process
            else:
                retired = self._keep(taken, stamp, own_writes)
        _close_all(retired)

    def _keep(self, taken: Snapshot, stamp: tuple, own_writes: int) -> list[Snapshot]:
        """Keep ``taken`` as the newest; the copies now too old to keep, for the caller to close
        once it holds no lock (closing a database takes a while)."""
        self._generation += 1
        taken.generation = self._generation
        self._stamp, self._own_writes = stamp, own_writes
        self._snapshots[self._generation] = taken
        return [self._snapshots.pop(g) for g in list(self._snapshots) if g <= self._generation - KEEP]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            taking, after_work = self._taking, self._after_work
        # Both threads look at _closed under the lock: neither starts more work, nor keeps what it made.
        if taking is not None:
            taking.join()
        if after_work is not None:
            after_work.shutdown(wait=True)
        with self._lock:
            blank, self._blank = self._blank, None
        if blank is not None:
            blank.close()
        with self._lock:
            for snapshot in self._snapshots.values():
                snapshot.close()
            self._snapshots.clear()


MAX_SHARED_STORES = 4  # stores whose copies one process keeps open for Store.query (least recent closed)
_shared: OrderedDict[tuple[Path, bool], Snapshots] = OrderedDict()
_shared_lock = threading.Lock()
_shared_pid = os.getpid()


def shared(root: Path, background: bool = False) -> Snapshots:
    """This process's copies of the store at ``root`` (kept for :meth:`Store.query`), taken anew
    in the background or not (see :class:`Snapshots`)."""
    global _shared_pid
    key = (Path(root), background)
    with _shared_lock:
        if _shared_pid != os.getpid():  # a forked child must not use its parent's connections
            _shared.clear()
            _shared_pid = os.getpid()
        snapshots = _shared.pop(key, None) or Snapshots(key[0], background=background)
        _shared[key] = snapshots
        while len(_shared) > MAX_SHARED_STORES:
            _shared.popitem(last=False)[1].close()
        return snapshots


def forget(root: Path | None = None) -> None:
    """Close this process's copies of the store at ``root`` (every store's, without one)."""
    with _shared_lock:
        for key in [key for key in _shared if root is None or key[0] == Path(root)]:
            _shared.pop(key).close()


def _close_all(snapshots: list[Snapshot]) -> None:
    for snapshot in snapshots:
        snapshot.close()
