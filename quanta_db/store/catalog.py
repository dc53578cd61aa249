"""The one place that opens the store's catalog (a DuckLake: :mod:`quanta_db.store.lake`).

Connections are short: every caller opens, does one piece of work, and closes (on PostgreSQL
a process keeps its writing connection and lock session for its next commit,
:mod:`quanta_db.store.kept`: an ingest commits once per file it makes). Writers are
serialised, so that a commit's checks and its writes see no other commit in between: on a
local catalog by a lock file beside the metadata file (and DuckDB's own lock on it), readers
opening the copy each writer publishes as it ends (:mod:`quanta_db.store.published`); on
PostgreSQL by an advisory lock keyed by the store (DuckLake's optimistic commits alone let two
identical runs both commit). Readers never wait for a commit on either. A held lock is retried
with backoff for a bounded time and then reported in one line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from quanta_db.errors import StoreError
from quanta_db.store import extensions, kept, lake, published, sandbox, views
from quanta_db.store.settings import env_seconds
from quanta_db.store.sql import quote_ident, quote_literal, statement

LOCK_TIMEOUT_ENV = "QUANTA_DB_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 60.0
FIRST_RETRY_S = 0.01
SHORT_RETRY_S = 0.03


class CatalogLocked(StoreError):
    """Another process held the catalog's write lock past the timeout."""


def locate(root: Path) -> lake.Locator:
    """The catalog of the store at ``root``; a one-line error when ``root`` holds none."""
    locator = lake.locate(root)
    if locator is None:
        if (Path(root) / lake.LEGACY_FILE).is_file():
            raise StoreError(f"{root} is a store of quanta-db 0.1 (its catalog is {lake.LEGACY_FILE}); "
                             "upgrade it with `quanta-db migrate`")
        raise StoreError(f"{root} is not a quanta-db store (no {lake.LOCAL_FILE} or {lake.REMOTE_FILE}); "
                         "run `quanta-db init`")
    return locator


def lock_timeout_s() -> float:
    return env_seconds(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT_S)


def _is_lock_error(error: Exception) -> bool:
    text = str(error).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def _locked_message(locator: lake.Locator) -> str:
    return (f"catalog {locator.describe()} is locked by another process (an ingest committing?); "
            f"gave up after {lock_timeout_s():.0f}s (set {LOCK_TIMEOUT_ENV} to wait longer)")


def _next_delay_s(delay_s: float, waited_s: float) -> float:
    """Backoff between tries for a held lock: doubling from FIRST_RETRY_S, but at most
    SHORT_RETRY_S during the first second (a commit holds the lock for about 0.1 s, and a longer
    sleep would make a reader wait well past its end), then up to 1 s."""
    return min(delay_s * 2, SHORT_RETRY_S if waited_s < 1.0 else 1.0)


_HELD = object()  # what a try returns while another process holds the lock


def _with_backoff(locator: lake.Locator, attempt):
    """``attempt()`` until it returns something other than ``_HELD``, with backoff, for at most
    the lock timeout."""
    started = time.monotonic()
    delay_s = FIRST_RETRY_S
    while (result := attempt()) is _HELD:
        waited_s = time.monotonic() - started
        if waited_s >= lock_timeout_s():  # pragma: no mutate  (> is the same on a continuous clock)
            raise CatalogLocked(_locked_message(locator))
        time.sleep(delay_s)
        delay_s = _next_delay_s(delay_s, time.monotonic() - started)
    return result


def _retrying(locator: lake.Locator, attempt):
    """``attempt()``, retried with backoff while another process holds the catalog's write lock."""
    def once():
        try:
            return attempt()
        except duckdb.Error as error:
            if not _is_lock_error(error):
                raise StoreError(lake.describe_error(locator, error)) from None
            return _HELD

    return _with_backoff(locator, once)


def blank_connection(locator: lake.Locator) -> duckdb.DuckDBPyConnection:
    """A new in-memory DuckDB connection with the extensions a lake needs loaded, nothing attached
    (a new DuckDB database costs about 20 ms: a process that knows it will need one makes it ahead)."""
    con = duckdb.connect(config=extensions.connection_config(locator.on_postgres))
    try:
        extensions.load(con, locator.on_postgres)
    except BaseException:
        con.close()
        raise
    return con


def _attached(locator: lake.Locator, read_only: bool, metadata_file: Path | None = None, snapshot: int | None = None,
              con: duckdb.DuckDBPyConnection | None = None):
    """A new in-memory DuckDB connection (or ``con``, from :func:`blank_connection`: used once,
    even by a try that fails) with the store's lake attached as its default catalog."""
    con = con if con is not None else duckdb.connect(config=extensions.connection_config(locator.on_postgres))
    try:
        lake.attach(con, locator, read_only, metadata_file, snapshot)
    except BaseException:
        con.close()
        raise
    return con


def _attached_retrying(locator: lake.Locator, blank: duckdb.DuckDBPyConnection | None, read_only: bool = True,
                       **where):
    """An :func:`_attached` connection, retried while a writer holds the lock; the first try is
    made on ``blank`` when given."""
    unused = [blank]

    def attempt():
        con, unused[0] = unused[0], None
        return _attached(locator, read_only, con=con, **where)

    return _retrying(locator, attempt)


_next_writers = kept.Idle()  # a blank connection for this process's next local commit, made ahead
LOCAL_WRITERS = ("local writers",)  # its key there


def _local_writer(locator: lake.Locator) -> duckdb.DuckDBPyConnection:
    """A connection with a local catalog attached for writing, on a blank connection made in a
    thread after this process's previous commit (a new DuckDB database is 12-18 ms of a commit;
    an ingest commits once per file it makes)."""
    return _attached_retrying(locator, _next_writers.take(LOCAL_WRITERS), read_only=False)


def _make_next_writer(locator: lake.Locator) -> None:
    def make() -> None:
        with contextlib.suppress(Exception):  # the next commit opens its own, and says why it cannot
            _next_writers.give(LOCAL_WRITERS, blank_connection(locator))

    threading.Thread(target=make, name="quanta-db-next-writer").start()  # pragma: no mutate  (a name for thread dumps)


def _readers_copy(locator: lake.Locator) -> Path | None:
    """The file a local reader opens instead of the catalog: the readers' copy
    (:mod:`quanta_db.store.published`) when it is current, and then it never waits; None on
    PostgreSQL, or when the catalog itself must be read."""
    return None if locator.on_postgres else published.readers_file(locator.metadata_file)


def _open(locator: lake.Locator, read_only: bool, metadata_file: Path | None = None) -> duckdb.DuckDBPyConnection:
    """Open with bounded retry while another process holds the write lock; ``metadata_file``: the
    readers' copy a reader found (:func:`_readers_copy`), None for the catalog itself."""
    return _retrying(locator, lambda: _attached(locator, read_only, metadata_file=metadata_file))


@contextmanager
def _local_write_lock(locator: lake.Locator) -> Iterator[None]:
    """Hold a local catalog's write lock; publish the readers' copy before letting it go."""
    def acquire(try_once) -> None:
        _with_backoff(locator, lambda: True if try_once() else _HELD)

    with published.write_lock(locator.metadata_file, acquire):
        yield


_lock_sessions = kept.Idle()  # psycopg sessions that took and let go of a store's advisory lock
_writers = kept.Idle()  # connections with a lake on PostgreSQL attached for writing, between commits


@contextmanager
def _postgres_lock(locator: lake.Locator) -> Iterator[None]:
    """Hold the store's advisory lock on its PostgreSQL catalog, on a session this process keeps
    between commits (the server lets go of it when the session ends: a killed process's too)."""
    import psycopg

    where = kept.key(locator)
    session = _lock_sessions.take(where)
    try:
        if session is not None:
            try:
                _take_advisory_lock(locator, session)
            except psycopg.OperationalError:  # the server ended the kept session
                with contextlib.suppress(psycopg.Error):
                    session.close()
                session = None
        if session is None:
            session = kept.connect(locator)
            _take_advisory_lock(locator, session)
    except BaseException:
        if session is not None:
            session.close()
        raise
    try:
        yield
    finally:
        try:
            session.execute("SELECT pg_advisory_unlock(%s)", [locator.lock_key()])
        except psycopg.Error:
            session.close()
        else:
            _lock_sessions.give(where, session)


def _take_advisory_lock(locator: lake.Locator, session) -> None:
    _with_backoff(locator, lambda: session.execute("SELECT pg_try_advisory_lock(%s)",
                                                   [locator.lock_key()]).fetchone()[0] or _HELD)


def _postgres_writer(locator: lake.Locator) -> duckdb.DuckDBPyConnection:
    """A connection with the lake on PostgreSQL attached for writing: the one this process kept
    from its last commit if the server still answers it (DuckLake reads the newest snapshot at
    each transaction's start, so it sees other processes' commits), else a new one."""
    connection = _writers.take(kept.key(locator))
    if connection is not None:
        try:
            lake.snapshot_identity(connection, locator)
            return connection
        except duckdb.Error:
            connection.close()
    return _open(locator, read_only=False)


@contextmanager
def _metadata_read_lock(locator: lake.Locator) -> Iterator[None]:
    """Hold a read lock on a local catalog's metadata file: open it read-only as the plain DuckDB
    database it is (without attaching the lake on it, which costs tens of milliseconds more)."""
    con = _retrying(locator, lambda: duckdb.connect(str(locator.metadata_file), read_only=True))
    try:
        yield
    finally:
        con.close()


class PrivateCatalog:
    """One committed state of the store's catalog, private to this process, from which any number
    of read-only connections can be opened, each showing exactly that state.

    A local catalog's state is held open: the readers' copy, which is never written, only
    replaced (:mod:`~quanta_db.store.published`), so the file open now keeps that state for good;
    or, after a writer died before publishing it, a copy of the catalog itself made under a
    read-only connection (so no commit is half-copied) to a temporary file that is unlinked at
    once: nothing is left on disk, even by a process that is killed. Each connection attaches its
    own copy of that (copied by the kernel, about 9 ms for the 16 MB of a 25,000-file catalog) in a
    private temporary folder, unlinked once attached: DuckDB lets a connection read the files of
    the databases it attached, so the path it attached must name nothing once the user's SQL runs
    (attaching ``/proc/self/fd/N`` instead would let it read the catalog through that path). The
    connections that only the store's own SQL runs on, which read the metadata tables without the
    lake (:meth:`open_metadata`), attach the held file through that path: nothing is copied. A
    long query holds no lock that would make a commit wait. A catalog on PostgreSQL is attached
    read-only, pinned to the snapshot that was newest when this was made (its readers never
    block writers).
    """

    def __init__(self, root: Path, stamp: tuple | None = None):
        """``stamp``: the catalog's :func:`change_stamp`, when the caller has just taken it (on
        PostgreSQL it names the snapshot to pin, which saves a session)."""
        self.locator = locate(root)
        self._snapshot = None
        self._copies: dict[str, int] = {}  # file name → descriptor of the file holding this state of it
        if self.locator.on_postgres:
            self._snapshot = stamp[0] if stamp else _latest_snapshot(self.locator)
            return
        try:
            readers = published.readers_file(self.locator.metadata_file)
            if readers is not None:
                self._copies[lake.LOCAL_FILE] = os.open(readers, os.O_RDONLY)  # no one writes it
            else:
                with _metadata_read_lock(self.locator):  # no writer can commit during the copy
                    for name in (lake.LOCAL_FILE, lake.LOCAL_FILE + ".wal"):
                        with contextlib.suppress(FileNotFoundError):
                            self._keep_copy(self.locator.metadata_file.with_name(name), name)
        except BaseException:
            self.close()
            raise

    def _keep_copy(self, source: Path, name: str) -> None:
        # only descriptors are used, and the copy has no name once made: neither mode nor prefix shows
        with open(source, "rb") as reading, tempfile.TemporaryFile(prefix="quanta-db-catalog-") as copy:  # pragma: no mutate
            _copy_descriptor(reading.fileno(), copy.fileno())
            self._copies[name] = os.dup(copy.fileno())

    @property
    def pinned(self) -> int | None:
        """The snapshot a catalog on PostgreSQL is pinned to (None: a local copy, a fixed state)."""
        return self._snapshot

    def open(self, blank: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
        """A new read-only connection to this state of the catalog (on ``blank``, a connection
        made ahead by :func:`blank_connection`, when given: it is used or closed)."""
        if self.locator.on_postgres:
            return _attached_retrying(self.locator, blank, snapshot=self._snapshot)
        with self._copied() as metadata_file:
            return _attached_retrying(self.locator, blank, metadata_file=metadata_file)

    def open_metadata(self, blank: duckdb.DuckDBPyConnection | None = None) -> duckdb.DuckDBPyConnection:
        """A local catalog's metadata tables, attached as plain tables where the lake's attach
        puts them (:data:`quanta_db.store.lake.METADATA_CATALOG`): what the lake's state and its
        changes are read from, without the lake's own attach (about 60 ms at 5,000 files). For
        the store's own reads only."""
        if self.locator.on_postgres:
            raise ValueError("a catalog on PostgreSQL has no metadata file")
        con = blank if blank is not None else duckdb.connect()
        try:
            with self._held_or_copied() as metadata_file:
                con.execute(f"ATTACH {quote_literal(metadata_file.as_posix())} AS "
                            f"{quote_ident(lake.METADATA_CATALOG)} (READ_ONLY)")
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def _held_or_copied(self) -> Iterator[Path]:
        """A path of this state's metadata file for the store's own reads: the file this catalog
        holds open, through its descriptor (not copied: 20-45 ms of a new state at 25,000 files),
        when it is the whole state; else (a write-ahead log beside it, or no /proc) a copy."""
        descriptor = self._copies.get(lake.LOCAL_FILE)
        held = Path(f"/proc/self/fd/{descriptor}")
        if len(self._copies) == 1 and descriptor is not None and held.exists():
            yield held
        else:
            with self._copied() as copied:
                yield copied

    @contextmanager
    def _copied(self) -> Iterator[Path]:
        """This state's files copied into a private folder, removed on leaving: the path of its
        metadata file, for one attach."""
        folder = Path(tempfile.mkdtemp(prefix="quanta-db-sql-"))
        try:
            for name, descriptor in self._copies.items():
                target = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    _copy_descriptor(descriptor, target)
                finally:
                    os.close(target)
            yield folder / lake.LOCAL_FILE
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        copies, self._copies = self._copies, {}
        for descriptor in copies.values():
            os.close(descriptor)


COPY_CHUNK_BYTES = 8 << 20


def _copy_descriptor(source: int, target: int) -> None:
    """Copy the whole file open as ``source`` to the empty file open as ``target``, from offset 0
    (threads share a descriptor's offset, so ``source``'s is not moved): by the kernel
    (``copy_file_range``) where it can, else with positioned reads."""
    size = os.fstat(source).st_size
    offset = 0
    with contextlib.suppress(OSError, AttributeError):  # AttributeError: not Linux
        while offset < size and (copied := os.copy_file_range(source, target, size - offset, offset, offset)):
            offset += copied
    while chunk := os.pread(source, COPY_CHUNK_BYTES, offset):
        offset += os.pwrite(target, chunk, offset)


def user_sql_connection(root: Path, macros: bool = True) -> duckdb.DuckDBPyConnection:
    """A connection for user SQL: read-only, confined to reading the store's committed files
    (``sandbox.restrict``), on a private copy of the catalog (:class:`PrivateCatalog`) that shows
    one committed state for as long as it is open. ``macros``: create the saved analyses' table
    macros (:func:`~quanta_db.store.views.install_session_macros`) now.
    """
    private = PrivateCatalog(root)
    try:
        con = private.open()
    finally:
        private.close()
    try:
        if macros:
            views.install_session_macros(con)
        sandbox.restrict(con, Path(root))
    except BaseException:
        con.close()
        raise
    return con


def owner_connection(root: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection for the owner's unchecked SQL (``--unsafe``), with the saved
    analyses' table macros."""
    locator = locate(root)
    con = _open(locator, True, _readers_copy(locator))
    try:
        views.install_session_macros(con)
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def connect(root: Path, *, read_only: bool, user_sql: bool = False,
            locator: lake.Locator | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived connection to the store's catalog; closed on exit. A writing connection
    holds the store's write lock until then.

    ``user_sql``: confined to the store's committed files (``user_sql_connection``), without the
    saved analyses' macros: the caller creates those its statement calls (as it does on a
    ``read_only`` connection for the owner's unchecked SQL).
    ``locator``: the catalog of a store being created (default: the one ``root`` holds).
    """
    locator = locator or locate(root)
    with contextlib.ExitStack() as stack:
        if user_sql:
            con = user_sql_connection(Path(root), macros=False)
        elif read_only:
            con = _open(locator, True, _readers_copy(locator))
        else:
            stack.callback(_count_write)
            if not locator.on_postgres:
                stack.callback(_make_next_writer, locator)
            stack.enter_context(_postgres_lock(locator) if locator.on_postgres else _local_write_lock(locator))
            con = _postgres_writer(locator) if locator.on_postgres else _local_writer(locator)
        # a writer on PostgreSQL is kept for this process's next commit unless something failed while it was used
        keeps = locator.on_postgres and not (read_only or user_sql)
        stack.push(lambda failed, *_: _writers.give(kept.key(locator), con) if keeps and failed is None else con.close())
        yield con


class _KeptReader:
    """A read-only connection kept idle, with the change stamp taken before it was opened."""

    def __init__(self, connection: duckdb.DuckDBPyConnection, stamp: tuple):
        self.connection, self.stamp = connection, stamp

    def close(self) -> None:
        self.connection.close()


_own_readers = kept.Idle()  # the store's own reads: a connection kept until a commit lands


def _kept_reader(key: tuple, stamp: tuple, open_new) -> _KeptReader:
    """The reader kept for ``key`` if it was opened at ``stamp``, else ``open_new()``'s (the
    one kept, of an earlier stamp, closed). (A plain function: mutmut mutates no decorated one.)"""
    held = _own_readers.take(key)
    if held is not None and held.stamp == stamp:
        return held
    if held is not None:
        held.close()
    return _KeptReader(open_new(), stamp)


@contextmanager
def reading(root: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection for the store's own reads, as :func:`connect` opens, kept for this
    process's next read until a commit lands (the store's :func:`change_stamp` moves): attaching
    the lake costs 60-110 ms, and a job deciding what to compute reads the catalog dozens of
    times (the demo's re-run, every job already ingested, took 95 s, half of it attaching).

    Kept only where an idle connection holds no one back: on PostgreSQL, and locally on the
    readers' copy, which no one writes (the catalog itself would hold commits back with its
    shared lock). The stamp is taken before opening, so a commit landing meanwhile makes the
    next read open anew. One that failed while used is closed, never kept; one kept has ended
    its transaction."""
    locator = locate(root)
    copy = _readers_copy(locator)
    if not locator.on_postgres and copy is None:
        with connect(root, read_only=True, locator=locator) as con:
            yield con
        return
    key = (locator.root, locator.url, locator.schema)
    held = _kept_reader(key, _change_stamp(locator), lambda: _open(locator, True, copy))
    try:
        yield held.connection
        # A result left open (a fetchone) keeps its transaction, which on PostgreSQL holds the
        # metadata tables' locks: a DROP SCHEMA of the store would wait on the idle connection.
        held.connection.execute(statement("end_read")).fetchall()
    except BaseException:
        held.close()
        raise
    _own_readers.give(key, held)


_writes_in_process = 0
_writes_lock = threading.Lock()


def _count_write() -> None:
    global _writes_in_process
    with _writes_lock:
        _writes_in_process += 1


def writes_in_process() -> int:
    """How many writing connections of this process (to any store) have closed: a query that
    follows one must see what it wrote (:mod:`quanta_db.store.snapshots`)."""
    return _writes_in_process


def change_stamp(root: Path) -> tuple:
    """Something that changes whenever a commit lands: the identity, mtime and size of the file
    a local reader opens (the readers' copy, or the catalog file and its WAL), or the latest
    snapshot of a catalog on PostgreSQL."""
    return _change_stamp(locate(root))


def _change_stamp(locator: lake.Locator) -> tuple:
    if not locator.on_postgres:
        readers = published.readers_file(locator.metadata_file)
        if readers is not None:
            return (_stamp(readers),)
        return _stamp(locator.metadata_file), _stamp(locator.metadata_file.with_name(lake.LOCAL_FILE + ".wal"))
    return (_latest_snapshot(locator),)


def _latest_snapshot(locator: lake.Locator) -> int:
    """The newest snapshot of a lake on PostgreSQL (every query asks it), on the process's kept session."""
    from psycopg import sql

    query = sql.SQL("SELECT max(snapshot_id) FROM {}.ducklake_snapshot").format(sql.Identifier(locator.schema))
    return kept.read(locator, lambda session: session.execute(query).fetchone()[0])


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """(inode, mtime, size) of ``path``, None when absent — one stat, because a committing ingest
    removes the WAL between an exists() and a stat()."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size


def sqlalchemy_engine(root: Path, *, unsafe: bool):
    """A read-only SQLAlchemy engine (duckdb-engine) that opens one connection per checkout.

    NullPool keeps no connection open between statements, so a notebook holding this engine
    never blocks an ingest's commit. Unless ``unsafe``, each connection is confined to the
    store's files (``user_sql_connection``), and every statement must be a single read (see
    sandbox).
    """
    import sqlalchemy
    from duckdb_engine import ConnectionWrapper
    from sqlalchemy.pool import NullPool

    locate(root)
    opener = (lambda: owner_connection(root)) if unsafe else (lambda: user_sql_connection(root))
    engine = sqlalchemy.create_engine("duckdb://", poolclass=NullPool, creator=lambda: ConnectionWrapper(opener()))
    _answer_has_table_of_sql_text(engine.dialect)
    if unsafe:
        return engine
    sqlalchemy.event.listen(engine, "connect", lambda dbapi_con, record: record.info.update(
        table_macros=sandbox.table_macros(dbapi_con)))
    sqlalchemy.event.listen(engine, "before_cursor_execute", lambda con, _cursor, statement, *_rest:
                            sandbox.check_read_only(statement, con.info["table_macros"]))
    return engine


def _answer_has_table_of_sql_text(dialect) -> None:
    """``pandas.read_sql(text, engine)`` first asks whether ``text`` names a table, and
    duckdb-engine answers through DuckDB's ``pg_catalog`` emulation: about 60 ms on a confined
    connection, paid by every query. No table or view of a store has a name with white space,
    a semicolon or a parenthesis in it, so text holding one is SQL and is answered at once."""
    asks_catalog = dialect.has_table

    def has_table(connection, table_name: str, schema: str | None = None, **kw) -> bool:
        if any(ch.isspace() or ch in ";()" for ch in table_name):
            return False
        return asks_catalog(connection, table_name, schema, **kw)

    dialect.has_table = has_table
