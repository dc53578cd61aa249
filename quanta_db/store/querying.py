"""The one way user SQL runs: the statement check, on a connection confined to the store's files,
with an optional time limit and row limit. ``quanta-db query``, ``Store.query*``, the SQLAlchemy
engine's statements and every request of ``serve`` come through here."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from quanta_db.errors import QueryError, first_line
from quanta_db.store import lake, sandbox


@dataclass
class Result:
    table: pa.Table
    truncated: bool  # more rows than the row limit
    elapsed_ms: float


def run_unchecked(connection: duckdb.DuckDBPyConnection, sql: str, params: list | None = None,
                  time_limit_ms: int | None = None, max_rows: int | None = None) -> Result:
    """One statement of the store's owner (``--unsafe``: no statement check) on a new cursor of
    ``connection`` (:func:`quanta_db.store.catalog.connect`, read-only: the catalog itself is
    never written through it). Interrupted after ``time_limit_ms`` (None: no limit); at most ``max_rows``
    rows (None: all), ``truncated`` saying whether there were more."""
    return _execute(connection, sql, params, time_limit_ms, max_rows)


def run_on(snapshot, sql: str, params: list | None = None, time_limit_ms: int | None = None,
           max_rows: int | None = None) -> Result:
    """One statement of user SQL on a :class:`~quanta_db.store.snapshots.Snapshot`, limited as
    :func:`run_unchecked`: checked to be a read (:func:`quanta_db.store.sandbox.check_read_only`,
    the store's saved analyses allowed), then on a reader
    confined to the files the statement may read (reading them directly when it is one plain scan
    of a partition of one table, :mod:`quanta_db.store.direct`, on a reader with nothing attached
    when the state was read off PostgreSQL, and through the lake when that does not bind); again
    on one confined to every committed file if that reader refused a file the lake opened after
    all (see :mod:`quanta_db.store.reach`)."""
    sandbox.check_read_only(sql, snapshot.macros)
    with snapshot.reader(sql, params) as (connection, narrowed, attached):
        rewritten = snapshot.direct(sql, params)
        if rewritten is not None:
            try:
                # any refusal of a direct read sends it through the lake, narrowed or not
                return _execute(connection, rewritten, params, time_limit_ms, max_rows, direct=True, attached=attached)
            except _NarrowedOut:
                pass
        if attached:
            try:
                return _execute(connection, sql, params, time_limit_ms, max_rows, narrowed)
            except _NarrowedOut:
                pass
    if not attached:  # it read its files directly, and did not bind: through the lake
        with snapshot.reader(sql, params, attached=True) as (connection, narrowed, _):
            try:
                return _execute(connection, sql, params, time_limit_ms, max_rows, narrowed)
            except _NarrowedOut:
                pass
    with snapshot.reader(sql, params, everything=True) as (connection, _, _):
        return _execute(connection, sql, params, time_limit_ms, max_rows)


class _NarrowedOut(Exception):
    """A connection confined to a statement's files refused one the lake opened (or a statement
    reading its files directly did not run: it runs through the lake)."""


def _execute(connection: duckdb.DuckDBPyConnection, sql: str, params: list | None, time_limit_ms: int | None,
             max_rows: int | None, narrowed: bool = False, direct: bool = False, attached: bool = True) -> Result:
    con = lake.cursor(connection) if attached else connection.cursor()
    stopped = threading.Event()

    def stop() -> None:
        stopped.set()  # before the interrupt: any error it causes finds it set
        con.interrupt()

    timer = threading.Timer(time_limit_ms / 1000, stop) if time_limit_ms else None
    start = time.perf_counter()
    try:
        if timer:
            timer.start()
        relation = con.sql(sql, params=params or None)
        if relation is None:
            return Result(pa.table({}), False, 0.0)
        table = (relation.limit(max_rows + 1) if max_rows is not None else relation).to_arrow_table()
    except duckdb.InterruptException:
        raise QueryError(f"query stopped by the time limit ({time_limit_ms} ms)") from None
    except duckdb.PermissionException as error:
        if narrowed or direct:
            raise _NarrowedOut() from None
        raise QueryError(first_line(error)) from None
    except duckdb.Error as error:
        if stopped.is_set():  # an error of its own in an interrupted operator (the timer may still be running)
            raise QueryError(f"query stopped by the time limit ({time_limit_ms} ms)") from None
        if direct:
            raise _NarrowedOut() from None
        raise QueryError(first_line(error)) from None
    finally:
        if timer:
            timer.cancel()
        con.close()
    elapsed_ms = (time.perf_counter() - start) * 1000
    truncated = max_rows is not None and table.num_rows > max_rows
    return Result(table.slice(0, max_rows), truncated, elapsed_ms)  # zero-copy; all rows when max_rows is None
