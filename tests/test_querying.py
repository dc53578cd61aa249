"""User SQL's one way through the store (quanta_db/store/querying.py): ``run_on``'s routing,
path by path, against a stand-in snapshot (the readers it asks for; every attempt's parameters,
time limit and row limit); ``_execute``'s row limit, timer and retry rules on a bare DuckDB
connection; and the owner's unchecked queries, as Arrow and as pandas."""

from __future__ import annotations

import contextlib
import threading
import time

import duckdb
import pytest

from quanta_db.errors import QueryError


def test_the_owners_unchecked_queries_keep_their_parameters_and_limits(store):
    result = store.query("SELECT i FROM range(?) t(i) ORDER BY i", params=[5], unsafe=True, max_rows=3)
    assert result.table.column("i").to_pylist() == [0, 1, 2] and result.truncated
    assert not store.query("SELECT 1 AS one", unsafe=True, max_rows=3).truncated
    with pytest.raises(QueryError, match=r"stopped by the time limit \(50 ms\)"):
        # seconds of work without a limit (so a lost limit fails here rather than hangs), far over 50 ms on any machine
        store.query("SELECT sum(hash(i)) FROM range(300000000) t(i)", unsafe=True, time_limit_ms=50)


def test_a_querys_elapsed_time_is_in_milliseconds(monkeypatch):
    import itertools

    from quanta_db.store import querying

    clock = itertools.count(100.0, 0.25)  # each reading of the clock a quarter second later
    monkeypatch.setattr(querying.time, "perf_counter", lambda: next(clock))
    with duckdb.connect() as con:
        result = querying._execute(con, "SELECT 42 AS v", None, None, None, attached=False)
    assert result.table.column("v").to_pylist() == [42] and result.elapsed_ms == 250.0


class _StoppedCursor:
    """A cursor whose statement raises an error of its own after ``wait_s``, as DuckDB may when
    interrupted inside an operator rather than with ``InterruptException``."""

    def __init__(self, wait_s: float):
        self.wait_s = wait_s

    def cursor(self):
        return self

    def sql(self, sql, params=None):
        time.sleep(self.wait_s)
        raise duckdb.InvalidInputException("stopped mid-scan\nits second line")

    def interrupt(self):
        pass

    def close(self):
        pass


class _SlowlyInterruptedCursor(_StoppedCursor):
    """A cursor whose statement raises its own error as soon as it is interrupted, while the
    timer's call to ``interrupt`` has not returned yet (its thread still running)."""

    def __init__(self):
        super().__init__(0)
        self.interrupted = threading.Event()

    def sql(self, sql, params=None):
        assert self.interrupted.wait(10)
        return super().sql(sql, params)

    def interrupt(self):
        self.interrupted.set()
        time.sleep(0.5)


def test_an_error_raised_after_the_time_limit_is_the_time_limit_and_one_before_it_is_itself():
    from quanta_db.store import querying

    with pytest.raises(QueryError, match=r"^query stopped by the time limit \(50 ms\)$"):
        querying._execute(_StoppedCursor(0.3), "SELECT 1", None, 50, None, attached=False)
    with pytest.raises(QueryError, match=r"^query stopped by the time limit \(50 ms\)$"):
        querying._execute(_SlowlyInterruptedCursor(), "SELECT 1", None, 50, None, attached=False)
    with pytest.raises(QueryError, match=r"^stopped mid-scan$"):
        querying._execute(_StoppedCursor(0), "SELECT 1", None, 60_000, None, attached=False)


class _RoutingSnapshot:
    """A stand-in :class:`~quanta_db.store.snapshots.Snapshot` for ``querying.run_on``'s routing:
    each reader it lends is named by its order, narrowed unless it reads every file, attached
    when asked to be (or reading every file, or ``attached``)."""

    def __init__(self, rewritten: str | None, attached: bool, macros=frozenset()):
        self.rewritten, self.attached, self.macros = rewritten, attached, macros
        self.lent: list[tuple] = []

    @contextlib.contextmanager
    def reader(self, sql, params=None, everything=False, attached=False):
        self.lent.append((sql, params, everything, attached))
        yield f"reader {len(self.lent)}", not everything, everything or attached or self.attached

    def direct(self, sql, params=None):
        return self.rewritten if (sql, params) == (ROUTED_SQL, [7]) else None


ROUTED_SQL = "SELECT ? AS x"


def _execute_as_given(connection, sql, params, time_limit_ms, max_rows, narrowed=False, direct=False, attached=True):
    """``querying._execute``'s parameters, to compare calls by what each argument was given as."""


@pytest.mark.parametrize(("rewritten", "attached", "refused", "readers", "calls"), [
    # read directly on an attached reader
    ("SELECT direct", True, set(), [(False, False)], [("reader 1", "SELECT direct", False, True, True)]),
    # ... which refused: through the lake on the same reader, narrowed
    ("SELECT direct", True, {0}, [(False, False)],
     [("reader 1", "SELECT direct", False, True, True), ("reader 1", ROUTED_SQL, True, False, True)]),
    # ... which refused a file the lake opened: again on a reader of every file
    ("SELECT direct", True, {0, 1}, [(False, False), (True, False)],
     [("reader 1", "SELECT direct", False, True, True), ("reader 1", ROUTED_SQL, True, False, True),
      ("reader 2", ROUTED_SQL, False, False, True)]),
    # through the lake at once (no direct read), then every file
    (None, True, set(), [(False, False)], [("reader 1", ROUTED_SQL, True, False, True)]),
    (None, True, {0}, [(False, False), (True, False)],
     [("reader 1", ROUTED_SQL, True, False, True), ("reader 2", ROUTED_SQL, False, False, True)]),
    # read directly on a reader with nothing attached
    ("SELECT direct", False, set(), [(False, False)], [("reader 1", "SELECT direct", False, True, False)]),
    # ... which did not run: on an attached reader of its own files, then of every file
    ("SELECT direct", False, {0}, [(False, False), (False, True)],
     [("reader 1", "SELECT direct", False, True, False), ("reader 2", ROUTED_SQL, True, False, True)]),
    ("SELECT direct", False, {0, 1}, [(False, False), (False, True), (True, False)],
     [("reader 1", "SELECT direct", False, True, False), ("reader 2", ROUTED_SQL, True, False, True),
      ("reader 3", ROUTED_SQL, False, False, True)]),
])
def test_each_attempt_of_user_sql_gets_its_reader_parameters_and_limits(monkeypatch, rewritten, attached, refused,
                                                                        readers, calls):
    """``querying.run_on``'s routing, every path: which readers it asks for (every file or not,
    attached or not), and that each attempt runs the statement (or its direct rewrite) with the
    caller's parameters, time limit and row limit, told whether its reader is narrowed, whether
    it reads directly and whether the lake is attached; the last attempt's result is the answer."""
    import inspect

    from quanta_db.store import querying

    given = []

    def execute(*args, **kwargs):
        bound = inspect.signature(_execute_as_given).bind(*args, **kwargs)
        bound.apply_defaults()
        given.append(bound.arguments)
        if len(given) - 1 in refused:
            raise querying._NarrowedOut()
        return f"answer {len(given)}"

    monkeypatch.setattr(querying, "_execute", execute)
    snapshot = _RoutingSnapshot(rewritten, attached)
    assert querying.run_on(snapshot, ROUTED_SQL, [7], time_limit_ms=1234, max_rows=5) == f"answer {len(calls)}"
    assert snapshot.lent == [(ROUTED_SQL, [7], everything, attached) for everything, attached in readers]
    assert given == [dict(connection=connection, sql=sql, params=[7], time_limit_ms=1234, max_rows=5,
                          narrowed=narrowed, direct=direct, attached=on_lake)
                     for connection, sql, narrowed, direct, on_lake in calls]


def test_user_sql_is_checked_with_the_stores_saved_analyses_before_any_reader_is_lent(monkeypatch):
    """A table function is callable from user SQL when it is one of the store's saved analyses
    (the snapshot's ``macros``), and refused before anything runs when it is not."""
    from quanta_db.store import querying

    monkeypatch.setattr(querying, "_execute", lambda *args, **kwargs: "answer")
    snapshot = _RoutingSnapshot(None, True, macros=frozenset({"saved_pane"}))
    assert querying.run_on(snapshot, "SELECT * FROM saved_pane(1)") == "answer"
    with pytest.raises(QueryError):
        querying.run_on(snapshot, "SELECT * FROM other_function(1)")
    with pytest.raises(QueryError):
        querying.run_on(snapshot, "DELETE FROM runs")
    assert [sql for sql, *_ in snapshot.lent] == ["SELECT * FROM saved_pane(1)"]


@pytest.mark.parametrize(("rows", "max_rows", "kept", "truncated"), [
    (5, 3, [0, 1, 2], True), (4, 3, [0, 1, 2], True), (3, 3, [0, 1, 2], False), (2, 3, [0, 1], False),
    (0, 3, [], False), (5, None, [0, 1, 2, 3, 4], False), (5, 0, [], True),
])
def test_a_result_keeps_at_most_its_row_limit_and_says_whether_there_were_more(rows, max_rows, kept, truncated):
    from quanta_db.store import querying

    with duckdb.connect() as con:
        result = querying._execute(con, "SELECT i FROM range(?) t(i) ORDER BY i", [rows], None, max_rows, attached=False)
    assert (result.table.column("i").to_pylist(), result.truncated) == (kept, truncated)


def test_a_row_limit_stops_the_statement_past_it():
    """The statement itself is limited (to one row more than kept, to tell whether there were
    more), not read whole and cut: rows far past the limit are never computed."""
    from quanta_db.store import querying

    sql = "SELECT CASE WHEN i > 5000000 THEN error('read past the limit') ELSE i END AS i FROM range(10000000) t(i)"
    with duckdb.connect() as con:
        result = querying._execute(con, sql, None, None, 3, attached=False)
        with pytest.raises(QueryError, match="read past the limit"):
            querying._execute(con, sql, None, None, None, attached=False)
    assert (result.table.column("i").to_pylist(), result.truncated) == ([0, 1, 2], True)


def test_the_time_limit_interrupts_the_statements_own_cursor_after_that_many_seconds(monkeypatch):
    """The timer is set to ``time_limit_ms`` in seconds and interrupts the cursor the statement runs
    on; it is started before the statement and cancelled after it, and none is set without a limit."""
    from quanta_db.store import querying

    timers = []

    class Timer:
        def __init__(self, interval, function):
            self.interval, self.function, self.events = interval, function, []
            timers.append(self)

        def start(self):
            self.events.append("start")

        def is_alive(self):
            return True

        def cancel(self):
            self.events.append("cancel")

    class Cursor:  # a real cursor, its interrupts counted
        def __init__(self, real):
            self.real, self.interrupts = real, 0

        def sql(self, sql, params=None):
            return self.real.sql(sql, params=params)

        def interrupt(self):
            self.interrupts += 1

        def close(self):
            self.real.close()

    class Connection:
        def __init__(self, real):
            self.real, self.cursors = real, []

        def cursor(self):
            self.cursors.append(Cursor(self.real.cursor()))
            return self.cursors[-1]

        def interrupt(self):
            pytest.fail("the connection itself interrupted")

    monkeypatch.setattr(querying.threading, "Timer", Timer)
    with duckdb.connect() as real:
        con = Connection(real)
        assert querying._execute(con, "SELECT 1 AS v", None, 250, None, attached=False).table.num_rows == 1
        assert querying._execute(con, "SELECT 1 AS v", None, None, None, attached=False).table.num_rows == 1
    [timer] = timers
    assert timer.interval == 0.25 and timer.events == ["start", "cancel"]
    timer.function()
    assert [cursor.interrupts for cursor in con.cursors] == [1, 0]  # the statement's own cursor


@pytest.mark.parametrize(("narrowed", "direct", "outcome"), [
    (False, False, "QueryError"), (True, False, "_NarrowedOut"), (False, True, "_NarrowedOut"), (True, True, "_NarrowedOut"),
])
def test_a_refused_file_is_a_retry_only_for_a_narrowed_or_direct_attempt(narrowed, direct, outcome):
    """DuckDB refusing a file (a permission error) sends a narrowed or direct attempt on to the
    next reader; on a reader of every file it is the user's one-line error."""
    from quanta_db.store import querying

    with duckdb.connect(config={"enable_external_access": False}) as con:
        with pytest.raises((QueryError, querying._NarrowedOut)) as raised:
            querying._execute(con, "SELECT * FROM read_parquet('/nowhere/x.parquet')", None, None, None,
                              narrowed=narrowed, direct=direct, attached=False)
    assert type(raised.value).__name__ == outcome
    if outcome == "QueryError":
        assert str(raised.value).startswith("Permission Error: Cannot access file") and "\n" not in str(raised.value)


@pytest.mark.parametrize(("narrowed", "direct", "outcome"), [
    (False, False, "QueryError"), (True, False, "QueryError"), (False, True, "_NarrowedOut"),
])
def test_any_other_error_is_a_retry_only_for_a_direct_read(narrowed, direct, outcome):
    """A direct read that does not run goes through the lake; any other attempt's error is the
    user's, its first line."""
    from quanta_db.store import querying

    with duckdb.connect() as con:
        with pytest.raises((QueryError, querying._NarrowedOut)) as raised:
            querying._execute(con, "SELECT no_such_column FROM range(1)", None, 60_000, None,
                              narrowed=narrowed, direct=direct, attached=False)
    assert type(raised.value).__name__ == outcome
    if outcome == "QueryError":
        assert str(raised.value).startswith("Binder Error: Referenced column \"no_such_column\" not found")
        assert "\n" not in str(raised.value)


def test_a_statement_runs_on_a_cursor_that_resolves_names_in_the_lake_when_attached(monkeypatch):
    from quanta_db.store import querying

    used = []
    monkeypatch.setattr(querying.lake, "cursor", lambda con: used.append("lake") or con.cursor())
    with duckdb.connect() as con:
        querying._execute(con, "SELECT 1", None, None, None)
        querying._execute(con, "SELECT 1", None, None, None, attached=False)
    assert used == ["lake"]


def test_a_dataframe_answer_has_nullable_integers_and_keeps_parameters_and_unsafe(store):
    """``Store.query_df``: ``query_arrow``'s answer with its parameters (and ``unsafe``), as pandas
    whose integer and boolean columns stay integral with a NULL (pandas' nullable types)."""
    import pandas as pd

    frame = store.query_df("SELECT i, nullif(i, 1)::TINYINT AS a, nullif(i, 1)::SMALLINT AS b, nullif(i, 1)::INTEGER AS c, "
                           "nullif(i, 1) AS d, nullif(i > 0, false) AS e FROM range(?) t(i) ORDER BY i", [3])
    assert [str(frame[c].dtype) for c in "abcde"] == ["Int8", "Int16", "Int32", "Int64", "boolean"]
    assert frame["d"].tolist() == [0, pd.NA, 2] and frame["e"].tolist() == [pd.NA, True, True]
    with pytest.raises(QueryError):
        store.query_df("SET VARIABLE answer = 42")
    assert store.query_df("SET VARIABLE answer = 42", unsafe=True).empty


def test_the_owners_statement_gets_only_the_saved_analyses_it_calls(store, monkeypatch):
    """``--unsafe`` statements run on a connection made for each: creating every saved analysis
    there binds each against the lake, so only those the statement calls are made."""
    from quanta_db.store import views

    made = []
    create = views.create_macros
    monkeypatch.setattr(views, "create_macros",
                        lambda con, queries: made.append({q.name for q in queries}) or create(con, queries))
    store.query("SELECT 1 AS one", unsafe=True)
    store.query("SELECT count(*) AS n FROM token_pane_loss('c', 'm', 0)", unsafe=True)
    with store.read() as con:
        every = {q.name for q in views.session_macros(con)}
    assert made[0] == set() and "token_pane_loss" in made[1] and len(made[1]) < len(every)


def test_a_store_query_reaches_its_runner_with_everything_it_was_given(store, monkeypatch):
    """``Store.query``: the owner's statement on a read-only connection with the saved analyses it
    calls, user SQL prechecked before any copy of the catalog is taken, then run on this process's
    copies (refreshed in the background only for a store opened so), each with every argument."""
    from quanta_db.store import copies, querying, views
    from quanta_db.store.store import Store

    seen = []

    def unchecked(con, *args):
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("CREATE TABLE main.probe (a INTEGER)")
        seen.append(("unchecked", *args))
        return "owner's"

    monkeypatch.setattr(querying, "run_unchecked", unchecked)
    monkeypatch.setattr(querying, "run_on", lambda snapshot, *args: seen.append((snapshot.root, *args)) or "user's")
    real_macros, real_shared = views.install_session_macros, copies.shared
    monkeypatch.setattr(views, "install_session_macros", lambda con, sql=None: seen.append(("macros", sql))
                        or real_macros(con, sql))
    monkeypatch.setattr(copies, "shared", lambda root, background=False: seen.append(("copies", root, background))
                        or real_shared(root, background))
    assert store.query("SELECT * FROM cluster_sizes", [1], unsafe=True, time_limit_ms=30, max_rows=4) == "owner's"
    assert seen == [("macros", "SELECT * FROM cluster_sizes"), ("unchecked", "SELECT * FROM cluster_sizes", [1], 30, 4)]
    polling = Store.open(store.root, background_refresh=True)
    seen.clear()
    with pytest.raises(QueryError):
        store.query("COPY (SELECT 1) TO 'x.csv'")
    assert seen == []  # refused before a copy of the catalog was asked for
    assert store.query("SELECT ?", [2], time_limit_ms=40, max_rows=5) == "user's"
    assert polling.query("SELECT 3") == "user's"
    assert seen == [("copies", store.root, False), (store.root, "SELECT ?", [2], 40, 5),
                    ("copies", store.root, True), (store.root, "SELECT 3", None, None, None)]
