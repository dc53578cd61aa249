"""Consistent private copies of the catalog, confined to the store's files, kept open for the
queries of one process.

User SQL is answered from a private read-only copy of the catalog
(:class:`quanta_db.store.catalog.PrivateCatalog`: a copy of the readers' copy, or on PostgreSQL
a connection pinned to one snapshot). Each process keeps its newest :class:`Snapshot` and takes
a new one only when the catalog's change stamp moves: a commit shows up atomically, and each
query sees the views of one committed state.

A snapshot holds:

- a first connection, opened with it and not yet confined: the store's own catalog reads run on
  it (the schema check of ``Store.open``), and it becomes the first statement's reader, so a
  process that opens the store and queries it attaches the catalog once for both;
- readers: connections confined to the files a statement may read (DuckDB's ``allowed_paths``
  costs about 13 µs a path to set, so confining to 1 file rather than 25,000 saves 0.3 s), kept
  for the statements that follow, which reuse any whose files cover theirs;
- ``catalog``: a connection that may open no data file, opened only when a statement must be
  planned by DuckDB (:mod:`quanta_db.store.reach`: most are planned from their text, and plans
  are kept across snapshots).

A state that only added files to the previous one (an ingest's commit) is read as plain metadata
tables (on PostgreSQL through the previous state's connections) until a statement needs the lake;
a statement whose answer those files leave unchanged is answered by a reader of the earlier state
(:meth:`Snapshot._earlier_reader`). ``serve`` takes each new snapshot in the background while it
answers from the previous one, with readers ready for the statements the previous one answered last.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from quanta_db.errors import QuantaError
from quanta_db.store import catalog, direct, lake, local_metadata, postgres_metadata, reach, sandbox, views
from quanta_db.store.sql import statement

MAX_READERS = 8  # readers one snapshot keeps for later statements (least recent closed when idle)
WARMED = 4  # statements a copy taken in the background takes readers for before it is used
UNATTACHED = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
# Read a state on PostgreSQL off the lake's metadata tables (postgres_metadata) when no reader of
# the previous state is there to read it through (tests set it False to take the lake's way).
READ_OFF_POSTGRES = True
# Read a process's first state of a local catalog off its metadata file (local_metadata; tests
# set it False to take the lake's way).
READ_OFF_METADATA = True


class _Reader:
    """A confined connection, the saved analyses created on it, and how many queries (and later
    snapshots, see :meth:`Snapshot._earlier_reader`) use it: ``users`` and ``retired`` change
    under ``guard``, the lock of the snapshot that made it."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, paths: frozenset[str] | None,
                 state: int, guard: threading.Lock, attached: bool = True):
        self.connection, self.paths = connection, paths  # paths None: every committed file
        self.attached = attached  # the lake is attached (else it reads its files directly only)
        self.state = state  # the lake snapshot it reads
        self.guard = guard
        self.made: set[str] = set()
        self.users = 0
        self.retired = False
        self.lock = threading.Lock()

    def borrow(self) -> bool:
        """Mark it in use by one more user unless it was closed (under ``guard``)."""
        if self.retired and self.users == 0:
            return False
        self.users += 1
        return True

    def covers(self, paths: frozenset[str] | None) -> bool:
        return self.paths is None or (paths is not None and paths <= self.paths)


class Snapshot:
    """One committed state of the store, for this process's user SQL (see the module's text)."""

    generation: int  # its place among the states a process kept, set when kept (copies.Snapshots._keep)

    def __init__(self, root: Path, memory_limit: str | None = None,
                 stamp: tuple | None = None, plans: reach.Plans | None = None,
                 blank: duckdb.DuckDBPyConnection | None = None, previous: Snapshot | None = None):
        self.root, self.memory_limit = Path(root), memory_limit
        self._folder = sandbox.store_folder(self.root)
        self._plans = plans if plans is not None else reach.Plans()
        self._lock = threading.Lock()
        self._readers: OrderedDict[int, _Reader] = OrderedDict()
        # (statement, parameters) -> (the files it reaches, the statement, its parameters, the
        # oldest lake snapshot since which its answer is the same)
        self._reached: OrderedDict[tuple, tuple[frozenset[str], str, list | None, int]] = OrderedDict()
        self._spare: duckdb.DuckDBPyConnection | None = None  # opened, not yet confined
        # the metadata tables alone, when this state only added inlined files to the previous one:
        # the lake itself is attached only once a statement needs this state
        self._probe: duckdb.DuckDBPyConnection | None = None
        self._planner: _Reader | None = None
        self._closed = False  # pragma: no mutate  (None: falsy too, only ever truth-tested)
        # (statement, parameters) -> the files it reached in the previous state and since when its
        # answer was the same, when this state only added files to that one after snapshot _since
        # (inlined in the metadata table _new_files, or read off PostgreSQL's)
        self._carried: dict[tuple, tuple[frozenset[str], int]] = {}
        self._new_files: str | None = None  # pragma: no mutate  (read only once _carry set it)
        self._since = 0  # pragma: no mutate  (read only once _carry set it)
        self._earlier: list[_Reader] = []  # readers of earlier states, lent by the previous snapshot
        try:
            self._private = catalog.PrivateCatalog(self.root, stamp)
        except BaseException:
            if blank is not None:
                blank.close()
            raise
        self._blank = blank  # for the first connection that attaches the lake
        self._shown_by: _Reader | None = None
        self._metadata: postgres_metadata.State | None = None  # read off the metadata, nothing attached
        try:
            follows = previous is not None and previous.root == self.root
            # on PostgreSQL the metadata tables are read where the previous state's connections
            # read them (the server's current state, whatever snapshot their lake is pinned to)
            # (a cursor of one of its readers, kept open by this snapshot until it closes)
            self._shown_by = previous._lend_one() if follows and self.locator.on_postgres else None
            if self._shown_by is None and self.locator.on_postgres and READ_OFF_POSTGRES:
                self._metadata = postgres_metadata.state(self.locator, self._private.pinned,
                                                         previous.state if follows else None)
            elif not follows and not self.locator.on_postgres and READ_OFF_METADATA:
                self._metadata = self._read_local_metadata()
            if self._metadata is not None:
                self.state, self.deleted, self.deletes = self._metadata.snapshot, frozenset(), []
                self.macros, self._saved = views.analyses([row[:3] for row in self._metadata.saved])
                if self._metadata.only_new_files:
                    self._carry(previous)
            else:
                self._read_state(previous if follows else None)
        except BaseException:
            self.close()
            raise

    def _read_local_metadata(self) -> postgres_metadata.State | None:
        """This local state read off its metadata file (:mod:`quanta_db.store.local_metadata`),
        kept open as the probe that statements' files are then found on; None when it must be
        read through the lake."""
        probe = self._private.open_metadata(self._pop_blank())
        try:
            found = local_metadata.state(probe, self.locator)
        except BaseException:
            probe.close()
            raise
        if found is None:
            probe.close()
        else:
            self._probe = probe
        return found

    def _read_state(self, previous: Snapshot | None) -> None:
        """Read this state off the lake (the metadata tables alone when it only added files to
        ``previous``'s)."""
        follows = previous is not None
        shown = self._shown_by.connection.cursor() if self._shown_by is not None else None
        lazy = follows and (shown is not None or not self.locator.on_postgres)
        if lazy:
            opened = self._probe = shown if shown is not None else self._private.open_metadata(self._pop_blank())
        else:
            opened = self._spare = self._private.open(self._pop_blank())
        self.state = lake.snapshot_identity(opened, self.locator, self._private.pinned)
        changes = (lake.changes(opened, self.locator, previous.state, self.state) if follows
                   else lake.ANEW)
        if lazy and changes.new_files is None:  # what follows reads the lake itself
            self._probe = None
            opened.close()
            opened = self._spare = self._private.open(self._pop_blank())  # pragma: no mutate  (None: a new one, the same state)
        if changes.only_inserts:
            # Commits of new rows (as every ingest's are) change neither: 2 catalog queries saved.
            self.deleted, self.deletes = previous.deleted, previous.deletes
            self.macros, self._saved = previous.macros, previous._saved
        if changes.new_files is not None:
            self._carry(previous)
            self._new_files = changes.new_files
        if not changes.only_inserts:
            by_table = lake.delete_files_by_table(opened)
            self.deleted = frozenset(by_table)  # the fact tables with delete files
            self.deletes = [path for paths in by_table.values() for path in paths]
            self.macros, self._saved = views.saved_analyses(opened)

    def _carry(self, previous: Snapshot) -> None:
        """This state only added files to ``previous``: a statement reaches the files it reached
        there and the new ones it reaches (reach.reached_new_files, postgres_metadata.reached_files),
        and a reader of ``previous`` may answer it (:meth:`_earlier_reader`)."""
        with previous._lock:
            self._carried = {key: (paths, since) for key, (paths, _, _, since) in previous._reached.items()}
            self._earlier = previous._lend()  # none once closed: closing empties both lists it lends from
        self._since = previous.state[0]

    # -- the catalog ---------------------------------------------------------------------------
    def schema_facts(self) -> tuple | None:
        """What the store's schema check reads (:meth:`quanta_db.store.store.Store.check_schema`),
        when this state was read off PostgreSQL; else None (it reads them on :meth:`catalog_cursor`)."""
        found = self._metadata
        if found is None:
            return None
        return (list(found.migrations), set(found.views), {name: sha for name, _, _, sha in found.saved})

    @property
    def locator(self):
        return self._private.locator

    @property
    def catalog(self) -> duckdb.DuckDBPyConnection:
        """A connection that reads the catalog and may open no data file (opened on first use)."""
        return self._planning().connection

    @contextmanager
    def catalog_cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor that reads the catalog: on the connection not yet confined when there is one
        (so a process that opens the store and then queries it attaches it once for both), else
        on :attr:`catalog`. For the store's own reads only: user SQL runs on readers."""
        spare = self._take_spare()
        cursor = lake.cursor(spare if spare is not None else self.catalog)
        try:
            yield cursor
        finally:
            cursor.close()
            if spare is not None:
                self._give_spare(spare)

    def _planner_connection(self) -> duckdb.DuckDBPyConnection:
        connection = self._private.open()
        try:
            # no file at all (so no store folder); the limit holds for what planning folds
            sandbox.restrict(connection, None, self.memory_limit, paths=[], deletes=[])
            connection.execute(statement("load_catalog")).fetchall()  # loads the catalog now
        except BaseException:
            connection.close()
            raise
        return connection

    def _planning(self) -> _Reader:
        with self._lock:
            if self._planner is not None:
                return self._planner
        connection = self._planner_connection()
        with self._lock:
            if self._planner is None and not self._closed:
                # never lent nor given back, so its guard is never taken (kept for the type)
                self._planner = _Reader(connection, frozenset(), self.state[0], self._lock)  # pragma: no mutate
                return self._planner
        connection.close()  # another thread planned first (or this snapshot was closed)
        if self._closed:
            raise QuantaError("this copy of the catalog was closed")
        return self._planning()

    # -- readers ------------------------------------------------------------------------------
    @contextmanager
    def reader(self, sql: str, params: list | None = None, everything: bool = False, attached: bool = False
               ) -> Iterator[tuple[duckdb.DuckDBPyConnection, bool, bool]]:
        """A connection confined to the files ``sql`` may read (``everything``: to every committed
        file), with the saved analyses it calls; whether it is narrower than every file; and
        whether it has the lake attached (else it can only read them directly, :meth:`direct`;
        ``attached``: it must have it)."""
        reader = self._held(None)
        if reader is None and not everything:
            reader = self._reader_for(sql, params, unattached=not attached)
        if reader is None:
            reader = self._held(None) or self._keep(self._confined(None, self._take_spare()))
        try:
            if reader.attached:
                self._make_macros(reader, sql)
            yield reader.connection, reader.paths is not None, reader.attached
        finally:
            self._release(reader)

    def reach(self, sql: str, params: list | None = None) -> frozenset[str] | None:
        """The absolute paths of the committed files ``sql`` may read, or None when its plan
        cannot tell (it reads files by name, or does not plan without reading one)."""
        return self._reach(sql, params, give_back=True)[0]

    def recent(self, count: int = WARMED) -> list[tuple[str, list | None]]:
        """The statements (and parameters) whose files this snapshot found last, newest first."""
        with self._lock:
            return [(sql, params) for _, sql, params, _ in list(reversed(self._reached.values()))[:count]]

    def warm(self, statements: list[tuple[str, list | None]]) -> None:
        """Take readers for ``statements`` now (a new copy taken in the background is ready for
        the statements that its predecessor was answering)."""
        for sql, params in statements:
            with contextlib.suppress(Exception), self.reader(sql, params):
                pass

    def direct(self, sql: str, params: list | None = None) -> str | None:
        """``sql`` reading the files it reaches directly (:mod:`quanta_db.store.direct`), once they
        are known; None when it reads through the lake."""
        plan, one_scan = self._planned(sql, params)
        with self._lock:
            known = self._reached.get((sql, repr(params)))
        if not one_scan or known is None:
            return None
        return direct.statement(sql, plan[0], known[0], self.deleted)

    def _plan(self, sql: str, params: list | None):
        return self._planned(sql, params)[0]

    def _planned(self, sql: str, params: list | None) -> tuple:
        """(the statement's plan, whether it is one plain scan of one fact table)."""
        key = (sql, repr(params))
        found = self._plans.get(key)
        if found is reach.UNPLANNED:
            planned = sandbox.planned_statement(sql)
            tree = sandbox.serialised(planned)
            plan = reach.one_scan_plan(tree)
            one_scan = plan is not None and len(plan) == 1
            if one_scan and plan[0].direct:  # the statement itself, and it keeps its meaning with a CTE
                plan = (plan[0]._replace(direct=planned == sql and direct.keeps_meaning(sql, plan[0].table, tree)),)
            if plan is None:  # planned by DuckDB, on a connection that can open no data file
                planner = self._planning()
                self._make_macros(planner, planned)
                plan = reach.plan(planner.connection, planned, params)
            found = (plan, one_scan)
            self._plans.put(key, *found)
        return found

    def _reach(self, sql: str, params: list | None, give_back: bool):
        """(the files ``sql`` reaches or None, the unconfined connection used to find them, if
        kept: not ``give_back``)."""
        plans = self._plan(sql, params)
        if plans is None:
            return None, None
        key = (sql, repr(params))
        with self._lock:
            known = self._reached.get(key)
        if known is not None:
            return known[0], None
        carried = self._carried.get(key)
        if self._metadata is not None:
            after = self._since if carried is not None else -1
            if self.locator.on_postgres:
                new = postgres_metadata.reached_files(self.locator, self._metadata, self._folder, plans, after=after)
            else:
                with contextlib.closing(self._probe.cursor()) as cursor:
                    new = reach.reached_new_files(cursor, self._folder, plans, self._metadata.files, after,
                                                  self.state[0])
            if new is not None:
                since = carried[1] if carried is not None and not new else self.state[0]
                paths = new | carried[0] if carried is not None else new
                self._remember(key, paths, sql, params, since)
                return paths, None
        probe = self._probe if carried is not None else None  # the new files are read off the metadata
        spare = None if probe is not None else self._take_spare()  # only the store's own SQL runs on it
        try:
            source = probe.cursor() if probe is not None else lake.cursor(
                spare if spare is not None else self._catalog_reader())
            with contextlib.closing(source) as cursor:
                since = self.state[0]
                if carried is not None:
                    new = reach.reached_new_files(cursor, self._folder, plans, self._new_files,
                                                  self._since, self.state[0])
                    paths = carried[0] | new
                    if not new:
                        since = carried[1]
                else:
                    paths = reach.reached_files(cursor, self._folder, plans)
        except BaseException:
            if spare is not None:
                spare.close()
            raise
        self._remember(key, paths, sql, params, since)
        if give_back and spare is not None:
            self._give_spare(spare)
            spare = None
        return paths, spare

    def _remember(self, key: tuple, paths: frozenset[str], sql: str, params: list | None, since: int) -> None:
        with self._lock:
            self._reached[key] = (paths, sql, params, since)
            while len(self._reached) > reach.MAX_REACHES:
                self._reached.popitem(last=False)  # pragma: no mutate  (last=None: the same, falsy)

    def _reader_for(self, sql: str, params: list | None, unattached: bool = False) -> _Reader | None:
        """A kept or new reader confined to the files ``sql`` reaches, marked in use; None when
        its plan cannot tell. ``unattached``: one without the lake will do if ``sql`` reads its
        files directly (in a state read off PostgreSQL, a new one is made so: no attach)."""
        paths, spare = self._reach(sql, params, give_back=False)
        unattached = unattached and paths is not None and self._reads_directly(sql, params)
        held = (self._held(paths, unattached) or self._earlier_reader(sql, params, paths, unattached)
                ) if paths is not None else None
        if held is not None or paths is None:
            if spare is not None:
                self._give_spare(spare)
            return held
        if unattached and spare is None and self._metadata is not None:
            return self._keep(self._unattached(paths))
        return self._keep(self._confined(paths, spare if spare is not None else self._take_spare()))

    def _reads_directly(self, sql: str, params: list | None) -> bool:
        """Whether ``sql`` reads its files directly (:meth:`direct`) and calls no saved analysis."""
        return self.direct(sql, params) is not None and not views.called_macros(self._saved, sql)

    def _earlier_reader(self, sql: str, params: list | None, paths: frozenset[str],
                        unattached: bool = False) -> _Reader | None:
        """A reader of an earlier state that answers ``sql`` as this state would, marked in use;
        None when there is none. It does when every commit since its state only added rows (no
        delete, no view or saved analysis changed: :func:`quanta_db.store.lake.changes`) and
        none of the files they added is one the statement reaches, and the statement is one
        plain scan of one fact table, so reads nothing but that table's files (a catalog
        table's rows change with every commit; a plan DuckDB made may hide other reads). A
        poller of one partition while others are committed then keeps its warm reader."""
        key = (sql, repr(params))
        _, one_scan = self._planned(sql, params)
        with self._lock:
            known = None if self._closed else self._reached.get(key)
        since = known[3] if known is not None else None
        if not one_scan or since is None or since >= self.state[0]:
            return None
        for reader in self._earlier:
            with reader.guard:
                if (reader.state >= since and reader.covers(paths) and (reader.attached or unattached)
                        and reader.borrow()):
                    return reader
        return None

    def _lend(self) -> list[_Reader]:
        """This snapshot's readers and those it was lent, newest first (at most MAX_READERS), marked
        in use by the next snapshot until it closes (called under this snapshot's lock)."""
        lent = [reader for reader in list(reversed(self._readers.values()))[:MAX_READERS] if reader.borrow()]
        for reader in self._earlier:
            if len(lent) >= MAX_READERS:
                break
            with reader.guard:
                if reader.borrow():
                    lent.append(reader)
        return lent

    def _catalog_reader(self) -> duckdb.DuckDBPyConnection:
        """A connection already open that reads the catalog (every reader does: its rows live in
        the catalog, not in files), opening the planning connection only when there is none."""
        with self._lock:
            kept = self._planner or next((r for r in reversed(self._readers.values()) if r.attached), None)
        return kept.connection if kept is not None else self.catalog

    def _pop_blank(self) -> duckdb.DuckDBPyConnection | None:
        with self._lock:
            blank, self._blank = self._blank, None
        return blank

    def _lend_one(self) -> _Reader | None:
        """One of this state's readers with the lake attached (or of those it was lent), marked in use by the caller,
        who releases it; None once closed, or before any."""
        with self._lock:
            if self._closed:
                return None
            for reader in reversed(self._readers.values()):
                if reader.attached and reader.borrow():
                    return reader
            earlier = list(self._earlier)
        for reader in earlier:
            with reader.guard:
                if reader.attached and reader.borrow():
                    return reader
        return None

    def _take_spare(self) -> duckdb.DuckDBPyConnection | None:
        with self._lock:
            spare, self._spare = self._spare, None
        return spare

    def _give_spare(self, spare: duckdb.DuckDBPyConnection) -> None:
        with self._lock:
            if self._spare is None and not self._closed:
                self._spare = spare
                return
        spare.close()

    def _confined(self, paths: frozenset[str] | None, connection: duckdb.DuckDBPyConnection | None) -> _Reader:
        connection = connection if connection is not None else self._private.open(self._pop_blank())
        try:
            sandbox.restrict(connection, self.root, self.memory_limit,
                             paths=None if paths is None else sorted(paths), deletes=self.deletes)
        except BaseException:
            connection.close()
            raise
        return _Reader(connection, paths, self.state[0], self._lock)

    def _unattached(self, paths: frozenset[str]) -> _Reader:
        """A reader of ``paths`` with nothing attached, for statements that read them directly."""
        connection = duckdb.connect(config=UNATTACHED)
        try:
            sandbox.restrict(connection, None, self.memory_limit, paths=sorted(paths), deletes=[])  # paths: no root
        except BaseException:
            connection.close()
            raise
        return _Reader(connection, paths, self.state[0], self._lock, attached=False)  # pragma: no mutate  (None: falsy too)

    def _held(self, paths: frozenset[str] | None, unattached: bool = False) -> _Reader | None:
        """A kept reader covering ``paths`` (None: only one confined to every file), marked in
        use; with the lake attached unless ``unattached``."""
        with self._lock:
            for key, reader in reversed(self._readers.items()):
                if reader.covers(paths) and (reader.attached or unattached):  # covers(None): every file
                    self._readers.move_to_end(key)
                    reader.users += 1
                    return reader
        return None

    def _keep(self, reader: _Reader) -> _Reader:
        """``reader`` kept for later statements, marked in use (its maker answers with it first)."""
        with self._lock:
            reader.users += 1
            self._readers[id(reader)] = reader
            idle = [key for key, kept in self._readers.items() if kept.users == 0 and kept.paths is not None]
            for key in idle[:max(0, len(self._readers) - MAX_READERS)]:
                self._readers.pop(key).connection.close()
        return reader

    @staticmethod
    def _release(reader: _Reader) -> None:
        with reader.guard:
            reader.users -= 1
            if reader.retired and reader.users == 0:
                reader.connection.close()

    def _make_macros(self, reader: _Reader, sql: str) -> None:
        """Create the saved analyses ``sql`` calls (directly or through another) on ``reader``."""
        with reader.lock:
            missing = [query for query in views.called_macros(self._saved, sql) if query.name not in reader.made]
            if missing:
                views.create_macros(reader.connection, missing)
                reader.made.update(query.name for query in missing)

    # -- closing ------------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._closed = True
            spare, self._spare = self._spare, None
            planner, self._planner = self._planner, None
            probe, self._probe = self._probe, None
            blank, self._blank = self._blank, None
        for connection in (spare, probe, blank):
            if connection is not None:
                connection.close()
        with self._lock:
            for reader in [*self._readers.values(), *([planner] if planner is not None else [])]:
                if reader.users:
                    reader.retired = True  # closed by its last user
                else:
                    reader.connection.close()
            self._readers.clear()
            earlier, self._earlier = self._earlier, []
            shown_by, self._shown_by = self._shown_by, None
        for reader in [*earlier, *([shown_by] if shown_by is not None else [])]:
            self._release(reader)
        self._private.close()
