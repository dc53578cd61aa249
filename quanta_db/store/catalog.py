"""The one place that opens the DuckDB catalog.

DuckDB lets one process hold a database file for writing, and a writer in another process
locks readers out ("Could not set lock on file"). Connections here are therefore short:
every caller opens, does one piece of work, and closes; a locked catalog is retried with
backoff for a bounded time and then reported in one line.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from quanta_db.errors import StoreError, first_line
from quanta_db.store import sandbox
from quanta_db.store.settings import env_seconds

CATALOG_FILE = "catalog.duckdb"
LOCK_TIMEOUT_ENV = "QUANTA_DB_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT_S = 60.0
STORAGE_COMPATIBILITY = "v1.0.0"


class CatalogLocked(StoreError):
    """Another process held the catalog's write lock past the timeout."""


def catalog_path(root: Path) -> Path:
    return Path(root) / CATALOG_FILE


def lock_timeout_s() -> float:
    return env_seconds(LOCK_TIMEOUT_ENV, DEFAULT_LOCK_TIMEOUT_S)


def _is_lock_error(error: Exception) -> bool:
    text = str(error).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


def _retrying(path: Path, attempt):
    """``attempt()``, retried with backoff while another process holds the catalog's write lock."""
    deadline = time.monotonic() + lock_timeout_s()
    delay_s = 0.05
    while True:
        try:
            return attempt()
        except duckdb.Error as error:
            if not _is_lock_error(error):
                raise StoreError(f"cannot open catalog {path}: {first_line(error)}") from None
            if time.monotonic() >= deadline:
                raise CatalogLocked(
                    f"catalog {path} is locked by another process (an ingest committing?); "
                    f"gave up after {lock_timeout_s():.0f}s (set {LOCK_TIMEOUT_ENV} to wait longer)"
                ) from None
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 1.0)


def _open(root: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    """Open with bounded retry while another process holds the write lock."""
    path = catalog_path(root)
    # A new catalog is written in a storage format that DuckDB 1.0 and later can read, so
    # the CLI, DBeaver or an R session of another DuckDB version can open the store.
    config = {} if path.exists() else {"storage_compatibility_version": STORAGE_COMPATIBILITY}
    return _retrying(path, lambda: duckdb.connect(str(path), read_only=read_only, config=config))


def user_sql_connection(root: Path, memory_limit: str | None = None) -> duckdb.DuckDBPyConnection:
    """A connection for user SQL: a private read-only copy of the catalog, confined to reading the
    store's committed files (``sandbox.restrict``).

    DuckDB lets a connection read the files of its attached databases whatever ``allowed_paths``
    says, so a connection to ``catalog.duckdb`` itself could read that file (and its WAL) through
    ``read_blob``. The catalog is therefore copied (under a read-only connection, so no commit is
    half-copied) into a private folder in the temporary folder, the copy opened read-only, and its
    folder removed at once: the open connection keeps its file, and no path names it any more.
    A read-only database also refuses every catalog change by itself.
    """
    path = catalog_path(root)
    if not path.exists():
        raise StoreError(f"{root} is not a quanta-db store (no {CATALOG_FILE}); run `quanta-db init`")
    folder = Path(tempfile.mkdtemp(prefix="quanta-db-sql-"))
    try:
        copy = folder / CATALOG_FILE
        with connect(root, read_only=True):  # no writer can commit during the copy
            for source in (path, path.with_name(path.name + ".wal")):
                with contextlib.suppress(FileNotFoundError):
                    shutil.copyfile(source, copy.with_name(source.name))
        con = duckdb.connect(str(copy), read_only=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    try:
        sandbox.restrict(con, root, memory_limit)
    except BaseException:
        con.close()
        raise
    return con


@contextmanager
def connect(root: Path, *, read_only: bool, user_sql: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived connection to the store's catalog; closed on exit.

    ``user_sql``: a private read-only copy, confined to the store's committed files
    (``user_sql_connection``).
    """
    if not catalog_path(root).exists() and read_only:
        raise StoreError(f"{root} is not a quanta-db store (no {CATALOG_FILE}); run `quanta-db init`")
    con = user_sql_connection(Path(root)) if user_sql else _open(Path(root), read_only)
    try:
        yield con
    finally:
        con.close()


def sqlalchemy_engine(root: Path, unsafe: bool = False):
    """A read-only SQLAlchemy engine (duckdb-engine) that opens one connection per checkout.

    NullPool keeps no connection open between statements, so a notebook holding this engine
    never blocks an ingest's commit. Unless ``unsafe``, each connection is a private copy of the
    catalog confined to the store's files (``user_sql_connection``), and every statement must be
    a single read (see sandbox).
    """
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    path = catalog_path(root)
    if not path.exists():
        raise StoreError(f"{root} is not a quanta-db store (no {CATALOG_FILE})")
    if unsafe:
        return sqlalchemy.create_engine(f"duckdb:///{path}", poolclass=NullPool, connect_args={"read_only": True})
    from duckdb_engine import ConnectionWrapper

    engine = sqlalchemy.create_engine("duckdb://", poolclass=NullPool,
                                      creator=lambda: ConnectionWrapper(user_sql_connection(root)))
    sqlalchemy.event.listen(engine, "connect", lambda dbapi_con, record: record.info.update(
        table_macros=sandbox.table_macros(dbapi_con)))
    sqlalchemy.event.listen(engine, "before_cursor_execute", lambda con, _cursor, statement, *_rest:
                            sandbox.check_read_only(statement, con.info.get("table_macros", frozenset())))
    return engine
