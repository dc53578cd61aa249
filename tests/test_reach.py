"""User SQL confined to the files its statement reaches (quanta_db/store/reach.py): the files a
statement's reader may open are checked against the committed files' own keys (the manifest,
filtered in Python), every answer against the owner's unconfined connection, and a reader that
is too narrow must still answer, on every committed file."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pyarrow as pa
import pytest

from quanta_db.store import catalog, copies, lake, local_metadata, postgres_metadata, querying, reach, sandbox, snapshots, views

MODELS, STEPS, CORPORA, ROWS = ("m-a", "m-b"), (0, 1000, 2000), ("c-0", "c-1", "c-2"), 20


def _losses(model: str, step: int, corpus: str, run_id: str, rng) -> pa.Table:
    return pa.table({"model": pa.repeat(model, ROWS), "step": pa.repeat(step, ROWS), "corpus": pa.repeat(corpus, ROWS),
                     "doc_id": np.arange(ROWS, dtype=np.int64) // 5, "pos": (np.arange(ROWS) % 5 + 1).astype(np.int32),
                     "loss_nats": rng.gamma(2.0, 1.5, ROWS).astype(np.float32), "run_id": pa.repeat(run_id, ROWS)})


def _commit_suite(store):
    """One committed file per (model, step, corpus): 18 files of token_losses."""
    rng = np.random.default_rng(0)
    with store.begin_run("reach_test", {"n": 1}) as run:
        for model in MODELS:
            for step in STEPS:
                for corpus in CORPORA:
                    run.write("token_losses", _losses(model, step, corpus, run.run_id, rng))
        run.commit()
    return store


@pytest.fixture
def suite_store(tmp_path, catalog_backend, _store_templates):
    from quanta_db.store.store import Store
    from tests.helpers import fresh_store

    return fresh_store(_store_templates, "reach_suite", tmp_path / "store", catalog_backend,
                       lambda root: _commit_suite(Store.init(root)))


def _files_where(store, keep) -> frozenset[str]:
    """The committed token_losses files whose recorded keys satisfy ``keep`` (absolute paths)."""
    return frozenset(row["path"] for row in store.manifest("token_losses").to_pylist() if keep(row))


# (statement, parameters, which files it must be confined to: a test of a file's keys)
NARROWED = [
    ("SELECT avg(loss_nats) AS v FROM token_losses WHERE model = 'm-a' AND step = 1000 AND corpus = 'c-1'", None,
     lambda k: (k["model"], k["step"], k["corpus"]) == ("m-a", 1000, "c-1")),
    ("SELECT sum(loss_nats) AS v FROM token_losses WHERE model = ? AND step >= 1000", ["m-b"],
     lambda k: k["model"] == "m-b" and k["step"] >= 1000),
    ("SELECT count(*) AS v FROM token_losses WHERE corpus IN ('c-0', 'c-2') AND step BETWEEN 500 AND 1500", None,
     lambda k: k["corpus"] in ("c-0", "c-2") and 500 <= k["step"] <= 1500),
    ("SELECT count(*) AS v FROM token_losses WHERE corpus LIKE 'c-1%' AND 1000 < step", None,
     lambda k: k["corpus"].startswith("c-1") and k["step"] > 1000),
    ("SELECT count(*) AS v FROM token_losses a JOIN token_losses b USING (doc_id, pos, corpus) "
     "WHERE a.model = 'm-a' AND a.step = 0 AND b.model = 'm-b' AND b.step = 2000", None,
     lambda k: (k["model"], k["step"]) in (("m-a", 0), ("m-b", 2000))),
    ("SELECT avg(value) AS v FROM token_pane_loss('c-2', 'm-a', 2000)", None,  # a saved analysis (a macro)
     lambda k: (k["model"], k["step"], k["corpus"]) == ("m-a", 2000, "c-2")),
    ("EXPLAIN ANALYZE SELECT avg(loss_nats) FROM token_losses WHERE model = 'm-b' AND step = 0", None,
     lambda k: (k["model"], k["step"]) == ("m-b", 0)),
    ("SELECT count(*) AS v FROM token_losses t WHERE t.corpus LIKE 'c-2%' AND t.model = 'm-b'", None,
     lambda k: k["corpus"].startswith("c-2") and k["model"] == "m-b"),  # qualified by the table's alias
    ("SELECT count(*) AS v FROM token_losses WHERE corpus BETWEEN 'c-1' AND 'c-2' AND model = 'm-a'", None,
     lambda k: "c-1" <= k["corpus"] <= "c-2" and k["model"] == "m-a"),  # a text key between two strings
    ("SELECT count(*) AS v FROM Token_Losses T WHERE T.Model = 'm-b' AND \"STEP\" = 0", None,
     lambda k: (k["model"], k["step"]) == ("m-b", 0)),  # names in any case, quoted or not
]
# Filters the lake cannot prune files by: every file of the table stays allowed.
WHOLE_TABLE = [
    "SELECT count(*) AS v FROM token_losses WHERE model = 'm-a' OR step = 0",
    "SELECT avg(loss_nats) AS v FROM token_losses WHERE lower(model) = 'm-a'",
    "SELECT max(loss_nats) AS v FROM token_losses WHERE loss_nats > 1.0",
    "SELECT count(*) AS v FROM token_losses WHERE model = 'm-a'') OR true --'",  # quotes stay a constant
]


def _fallbacks(monkeypatch) -> list:
    taken = []
    real = snapshots.Snapshot.reader

    def reader(self, sql, params=None, everything=False, **how):
        taken.append(everything)
        return real(self, sql, params, everything, **how)

    monkeypatch.setattr(snapshots.Snapshot, "reader", reader)
    return taken


@pytest.mark.parametrize("case", range(len(NARROWED)))
def test_a_statement_is_confined_to_the_files_its_filters_reach(suite_store, monkeypatch, case):
    sql, params, keep = NARROWED[case]
    snapshot = copies.shared(suite_store.root).current()
    assert snapshot.reach(sql, params) == _files_where(suite_store, keep)
    taken = _fallbacks(monkeypatch)
    confined = suite_store.query(sql, params).table
    if not sql.startswith("EXPLAIN"):
        assert confined.equals(suite_store.query(sql, params, unsafe=True).table)
    assert taken == [False]  # answered by the narrowed reader, never retried on every file
    # in use while it answered, given back after: idle, so the least recent ones can be closed
    assert all(reader.users == 0 for reader in copies.shared(suite_store.root).current()._readers.values())


@pytest.mark.parametrize("sql", WHOLE_TABLE)
def test_filters_the_lake_cannot_prune_by_leave_every_file_allowed(suite_store, sql):
    snapshot = copies.shared(suite_store.root).current()
    reached = snapshot.reach(sql)
    assert reached is None or reached == _files_where(suite_store, lambda k: True) or sql.endswith("--'")
    assert suite_store.query(sql).table.equals(suite_store.query(sql, unsafe=True).table)


def test_a_reader_too_narrow_for_the_lake_is_retried_on_every_committed_file(suite_store, monkeypatch):
    # a qualified name: read through the lake, not directly (quanta_db/store/direct.py reads what reach found)
    sql = "SELECT count(*) AS v FROM main.token_losses WHERE model = 'm-a' AND step = 1000"
    for module, name in ((reach, "reached_files"), (reach, "reached_new_files"), (postgres_metadata, "reached_files")):
        monkeypatch.setattr(module, name, lambda *args, **kwargs: frozenset())  # as if the catalog pruned more than the lake
    taken = _fallbacks(monkeypatch)
    rows = "SELECT doc_id, pos FROM main.token_losses WHERE model = 'm-b' AND step = 0 ORDER BY ALL"
    limited = suite_store.query(rows, max_rows=3)  # the retry keeps the row limit
    assert limited.table.equals(suite_store.query(rows, unsafe=True).table.slice(0, 3)) and limited.truncated
    assert taken == [False, True]
    assert suite_store.query_df(sql)["v"].tolist() == [ROWS * len(CORPORA)]  # on the reader of every file, kept


def test_a_statement_that_reads_files_by_name_gets_every_committed_file(suite_store):
    path = suite_store.committed_paths("token_losses")[0]
    sql = f"SELECT count(*) AS v FROM read_parquet('{path}')"
    assert copies.shared(suite_store.root).current().reach(sql) is None  # planning needs the file itself
    assert suite_store.query_df(sql)["v"].tolist() == [ROWS]
    with pytest.raises(Exception, match="Permission"):  # and still nothing outside the committed files
        suite_store.query_arrow(f"SELECT * FROM read_parquet('{suite_store.root / 'catalog.ducklake'}')")


def test_only_fixed_forms_of_filters_become_conditions():
    parse = sandbox.serialised
    assert reach.conditions("optional: model IN ('a', 'b')", parse) == [reach.Condition("model", "IN", ("a", "b"))]
    assert reach.conditions("step>=1000 AND step<=3000", parse) == [
        reach.Condition("step", ">=", ("1000",), False), reach.Condition("step", "<=", ("3000",), False)]
    assert reach.conditions("3 < step", parse) == [reach.Condition("step", ">", ("3",), False)]
    assert reach.conditions("x=1.25", parse) == [reach.Condition("x", "=", ("1.25",), False)]
    assert reach.conditions("model=CAST('a' AS VARCHAR) AND model IN ('b', 1)", parse) == [
        reach.Condition("model", "=", ("a",), True), reach.Condition("model", "IN", ("b", "1"), False)]
    assert reach.conditions("model='x'' OR 1=1 --'", parse) == [reach.Condition("model", "=", ("x' OR 1=1 --",))]
    for refused in ("model='a' OR step=1", "lower(model)='a'", "model=other", "model<>'a'", "model IS NULL",
                    "model='a') OR (1=1", "(SELECT 1)=1", "model=NULL", "t.model='a'", "model=CAST(NULL AS VARCHAR)",
                    "step IN (1, NULL)", '"odd key" = 1', "lower(model) BETWEEN 'a' AND 'b'", "1 BETWEEN 0 AND 2"):
        assert reach.conditions(refused, parse) == [], refused


def test_every_reader_is_confined_within_the_committed_files(suite_store):
    committed = _files_where(suite_store, lambda k: True)
    for sql, params, _ in NARROWED:
        suite_store.query(sql, params)
    snapshot = copies.shared(suite_store.root).current()
    assert snapshot._readers and all(r.paths is not None and r.paths <= committed for r in snapshot._readers.values())
    assert querying.run_on(snapshot, "SELECT count(*) AS n FROM runs").table["n"][0].as_py() >= 1


@pytest.mark.parametrize("case", [0, 2, 3])
def test_a_plan_read_off_the_statement_equals_duckdbs_own(suite_store, case):
    sql, params, _ = NARROWED[case]
    tree_plan = reach.one_scan_plan(sandbox.serialised(sql))
    assert tree_plan is not None  # planned without DuckDB's planner
    snapshot = copies.shared(suite_store.root).current()
    duckdb_plan = reach.plan(snapshot.catalog, sql, params)
    with snapshot.catalog_cursor() as cursor:
        folder = suite_store.root.as_posix() + "/"
        assert reach.reached_files(cursor, folder, tree_plan) == reach.reached_files(cursor, folder, duckdb_plan)


def _scan(*conditions, direct=True, table="token_losses"):
    return (reach.ScanPlan(table, tuple(reach.Condition(*c) for c in conditions), direct),)


# A statement that scans one table once, and the plan read off its tree: the conditions on the
# table's per-file keys only, of the forms the lake prunes files by (as DuckDB's optimizer makes them).
ONE_SCAN = [
    ("SELECT * FROM token_losses", _scan()),
    ("SELECT * FROM token_losses WHERE true", _scan()),
    ("SELECT * FROM token_losses WHERE model = 'm' AND step = 5", _scan(("model", "=", ("m",)), ("step", "=", ("5",), False))),
    ("SELECT * FROM token_losses t WHERE t.model = 'm' AND 5 <= t.step",  # an alias; a constant on the left
     _scan(("model", "=", ("m",)), ("step", ">=", ("5",), False))),
    ("SELECT * FROM token_losses WHERE step > 2 AND step < 9 AND 3 > step AND 1 >= step AND 4 = step",
     _scan(*[("step", op, (n,), False) for op, n in ((">", "2"), ("<", "9"), ("<", "3"), ("<=", "1"), ("=", "4"))])),
    ("SELECT * FROM token_losses WHERE (model = 'a' AND (step = 1 AND corpus = 'c'))",  # nested conjunctions
     _scan(("model", "=", ("a",)), ("step", "=", ("1",), False), ("corpus", "=", ("c",)))),
    ("SELECT * FROM token_losses WHERE token_losses.corpus BETWEEN 'a' AND 'c'",  # qualified by the table's name
     _scan(("corpus", ">=", ("a",)), ("corpus", "<=", ("c",)))),
    ("SELECT * FROM token_losses WHERE step BETWEEN 1 AND '3'",  # one string: not compared as text
     _scan(("step", ">=", ("1",), False), ("step", "<=", ("3",), False))),
    ("SELECT * FROM token_losses WHERE model BETWEEN 1 AND 'z'",
     _scan(("model", ">=", ("1",), False), ("model", "<=", ("z",), False))),
    ("SELECT * FROM token_losses WHERE model LIKE 'pyt%'", _scan(("model", ">=", ("pyt",)), ("model", "<", ("pyu",)))),
    ("SELECT * FROM token_losses WHERE step = 1 AND model LIKE 'a%'",
     _scan(("step", "=", ("1",), False), ("model", ">=", ("a",)), ("model", "<", ("b",)))),
    ("SELECT * FROM token_losses WHERE contains(model, 'py%') AND starts_with(model, 'p')", _scan()),  # no LIKE
    ("SELECT * FROM token_losses t WHERE like(t.model, CAST('py%' AS VARCHAR))",
     _scan(("model", ">=", ("py",)), ("model", "<", ("pz",)))),
    ("SELECT * FROM token_losses WHERE step LIKE '1%' AND model LIKE 'p_%' AND model LIKE 1", _scan()),  # no text prefix
    ("SELECT * FROM token_losses WHERE model IN ('a', 'b') AND other.corpus = 'x' AND loss_nats > 1",
     _scan(("model", "IN", ("a", "b")))),  # another qualifier, a column that is no key: left out
    ("SELECT * FROM token_losses t WHERE t.step IN (1, '2')", _scan(("step", "IN", ("1", "2"), False))),
    ("SELECT * FROM token_losses WHERE model IN ('a', 1)", _scan(("model", "IN", ("a", "1"), False))),
    ("SELECT * FROM token_losses WHERE step IN (1, 2, NULL) AND step IN (1, step) AND model = NULL", _scan()),
    ("SELECT * FROM token_losses WHERE step BETWEEN 1 AND NULL AND step BETWEEN NULL AND 2", _scan()),
    ("SELECT * FROM token_losses WHERE step = CAST('5' AS BIGINT) AND corpus = TRY_CAST('c' AS VARCHAR)",
     _scan(("step", "=", ("5",), False))),  # a CAST of a constant is one; a TRY_CAST may be NULL
    ("SELECT * FROM token_losses WHERE model = CAST('a' AS VARCHAR) AND corpus = CAST(1 AS VARCHAR)",
     _scan(("model", "=", ("a",)), ("corpus", "=", ("1",), False))),
    ("SELECT * FROM token_losses WHERE step = 1.50", _scan(("step", "=", ("1.50",), False))),
    ("SELECT * FROM TOKEN_LOSSES T WHERE T.MODEL = 'a' AND \"Step\" = 2",
     _scan(("model", "=", ("a",)), ("step", "=", ("2",), False))),
    ("SELECT * FROM main.token_losses WHERE model = 'a'", _scan(("model", "=", ("a",)), direct=False)),
    ("SELECT * FROM tables.token_losses", _scan(direct=False)),
    ("SELECT * FROM lake.main.token_losses", _scan(direct=False)),
    ("SELECT * FROM tokens WHERE corpus = 'c'", _scan(("corpus", "=", ("c",)), table="tokens")),
    ("SELECT * FROM runs WHERE run_id = 'x'", ()),  # a catalog table: no files
    ("SELECT * FROM token_losses AT (VERSION => 1)", None),
    ("SELECT * FROM token_losses TABLESAMPLE 10%", None),
    ("SELECT * FROM token_losses WHERE step = ?", None),
    ("SELECT * FROM token_losses, token_losses", None),
    ("SELECT * FROM token_losses WHERE EXISTS (SELECT 1)", None),
    ("SELECT * FROM (SELECT * FROM token_losses)", None),
    ("SELECT * FROM token_losses UNION ALL SELECT * FROM token_losses", None),
    ("SELECT 1", None), ("SELECT 1; SELECT 2", None), ("", None),
]


@pytest.mark.parametrize(("sql", "planned"), ONE_SCAN)
def test_a_plain_scan_is_planned_off_its_tree(sql, planned):
    assert reach.one_scan_plan(sandbox.serialised(sql)) == planned


@pytest.mark.parametrize("sql", [
    "SELECT * FROM cluster_sizes", "SELECT * FROM tokens_per_subset", "SELECT * FROM no_such_table",
    "SELECT * FROM information_schema.tables", "SELECT * FROM other.token_losses", "SELECT * FROM temp.main.runs",
    "WITH token_losses AS (SELECT 'm' AS model) SELECT * FROM token_losses WHERE model = 'm'",  # the name is the CTE's
])
def test_a_statement_on_a_view_or_outside_the_lake_is_left_to_duckdbs_planner(sql):
    """Only a lake table's own name is one plain scan: a view (a saved analysis, a derived view)
    reads other tables, and a name in another schema or catalog, or one a CTE defines, is not the lake's table."""
    assert reach.one_scan_plan(sandbox.serialised(sql)) is None


def _commit_losses(store, partitions) -> None:
    rng = np.random.default_rng(len(partitions))
    with store.begin_run("reach_test", {"later": [list(p) for p in partitions]}) as run:
        for model, step, corpus in partitions:
            run.write("token_losses", _losses(model, step, corpus, run.run_id, rng))
        run.commit()


def test_a_commit_landing_while_a_state_is_read_is_left_to_the_next_state(suite_store, monkeypatch):
    """A state is the snapshot its copy of the catalog reads, even when a commit lands while it is
    read (on PostgreSQL the metadata is read where the server's newest state shows): the next
    state then finds that commit's files for a statement it carries over."""
    from quanta_db.store import lake

    sql = "SELECT count(*) AS v FROM token_losses WHERE model = 'm-race' AND corpus = 'c-0'"
    states = copies.Snapshots(suite_store.root)
    try:
        querying.run_on(states.current(), NARROWED[4][0])  # a reader with the lake attached, lent to the next state
        _commit_losses(suite_store, [("m-race", 0, "c-0")])
        real = lake.snapshot_identity

        def committed_first(*args, **kwargs):
            monkeypatch.setattr(lake, "snapshot_identity", real)
            _commit_losses(suite_store, [("m-race", 1000, "c-0")])
            return real(*args, **kwargs)

        monkeypatch.setattr(lake, "snapshot_identity", committed_first)
        second = states.current()
        assert lake.snapshot_identity is real  # the commit landed while the second state was read
        assert querying.run_on(second, sql).table["v"].to_pylist() == [ROWS]
        assert querying.run_on(states.current(), sql).table["v"].to_pylist() == [2 * ROWS]
    finally:
        states.close()


def test_a_later_state_reaches_what_it_reached_before_and_the_new_files(suite_store, monkeypatch):
    monkeypatch.setattr(snapshots, "READ_OFF_POSTGRES", False)  # the lake's metadata read by DuckDB
    shared = copies.shared(suite_store.root)
    before = shared.current()
    for sql, params, _ in NARROWED[:4]:
        before.reach(sql, params)
    # One new file each statement reaches (a second file of an old partition among them), one none does.
    _commit_losses(suite_store, [("m-a", 1000, "c-1"), ("m-b", 3000, "c-0"), ("m-c", 1000, "c-2"),
                                 ("m-c", 3000, "c-10"), ("m-c", 0, "c-5")])
    after = shared.current()
    assert after is not before and after._new_files is not None
    assert after.deletes == before.deletes and after.macros == before.macros
    monkeypatch.setattr(reach, "reached_files", lambda *args, **kwargs: pytest.fail("evaluated over every file"))
    for sql, params, keep in NARROWED[:4]:
        assert after.reach(sql, params) == _files_where(suite_store, keep), sql
        assert suite_store.query(sql, params).table.equals(suite_store.query(sql, params, unsafe=True).table)


def test_a_state_after_anything_but_new_rows_finds_everything_anew(suite_store):
    from quanta_db.store import lake

    locator = catalog.locate(suite_store.root)

    def state_and_changes(since):
        with suite_store.read() as con:
            now = lake.snapshot_identity(con, locator)
            return now, lake.changes(con, locator, since, now)

    first, _ = state_and_changes((0, ""))
    _commit_losses(suite_store, [("m-c", 0, "c-0")])
    second, changes_to_second = state_and_changes(first)
    assert changes_to_second.only_inserts and changes_to_second.new_files is not None
    assert not state_and_changes((first[0], "another lake's time"))[1].only_inserts
    with suite_store.write() as con:  # a new saved analysis: rows inserted, into the saved analyses' table
        con.execute("INSERT INTO saved_queries (name, sql, sha256) VALUES ('other', 'SELECT 1', 'x')")
    third, changes = state_and_changes(second)
    assert changes == lake.Changes(False, None)
    assert "other" in copies.shared(suite_store.root).current().macros
    with suite_store.write() as con:  # rows removed
        con.execute("DELETE FROM saved_queries WHERE name = 'other'")
    assert state_and_changes(third)[1] == lake.Changes(False, None)
    assert "other" not in copies.shared(suite_store.root).current().macros
    with suite_store.read() as con:  # the changes up to a state end there: the commits after it are not counted
        assert lake.changes(con, locator, first, second) == changes_to_second
        # from a state to itself nothing changed: a copy of it carries every statement's files over
        assert lake.changes(con, locator, second, second) == lake.Changes(True, changes_to_second.new_files)


def _answered_by(snapshot, sql: str, params) -> int:
    """The lake snapshot of the reader that answers ``sql`` in ``snapshot``."""
    with snapshot.reader(sql, params) as (connection, _, _):
        readers = [r for r in [*snapshot._readers.values(), *snapshot._earlier] if r.connection is connection]
        return readers[0].state


def test_a_reader_of_an_earlier_state_answers_only_what_the_commits_since_left_unchanged(suite_store):
    shared = copies.shared(suite_store.root)
    runs = ("SELECT count(*) AS v FROM runs", None)  # a catalog table: every commit adds a row
    joined = NARROWED[4][:2]  # planned by DuckDB (as is NARROWED[1], with a parameter): not one plain scan
    statements = [sql_params[:2] for sql_params in NARROWED[:4]] + [runs, joined]

    def answers_and_states():
        snapshot = shared.current()
        for sql, params in statements:
            assert suite_store.query(sql, params).table.equals(suite_store.query(sql, params, unsafe=True).table), sql
        return snapshot, [_answered_by(snapshot, sql, params) for sql, params in statements]

    first, states = answers_and_states()
    assert all(state == first.state[0] for state in states)
    _commit_losses(suite_store, [("m-c", 0, "c-5")])  # a file none of the statements reaches
    # Read off the new state's metadata alone (on PostgreSQL through the previous state's
    # connections): the lake itself is attached once a statement needs it.
    assert shared.current()._probe is not None and shared.current()._readers == {}
    second, states = answers_and_states()
    assert second.state[0] > first.state[0]
    assert states == [first.state[0], second.state[0], first.state[0], first.state[0]] + [second.state[0]] * 2
    with second.reader(*statements[0], everything=True):  # a reader of every file of the second state
        pass
    _commit_losses(suite_store, [("m-a", 1000, "c-1")])  # a second file of the first statement's partition
    third, states = answers_and_states()
    assert states == [third.state[0], third.state[0], second.state[0], second.state[0]] + [third.state[0]] * 2
    before = suite_store.query(*runs).table
    with suite_store.write() as con:  # not only new rows: nothing of an earlier state is kept
        con.execute("INSERT INTO saved_queries (name, sql, sha256) VALUES ('other', 'SELECT 1', 'x')")
    fourth, states = answers_and_states()
    assert fourth._earlier == [] and fourth._probe is None and all(state == fourth.state[0] for state in states)
    assert suite_store.query(*runs).table.equals(before)
    shared.close()
    assert all(reader.users == 0 for snapshot in (first, second, third) for reader in snapshot._readers.values())


def test_finding_a_statements_files_gives_the_spare_connection_back(suite_store, monkeypatch):
    monkeypatch.setattr(snapshots, "READ_OFF_POSTGRES", False)  # a state read through the lake
    monkeypatch.setattr(snapshots, "READ_OFF_METADATA", False)
    states = copies.Snapshots(suite_store.root)
    try:
        snapshot = states.current()
        spare = snapshot._spare
        assert spare is not None
        assert snapshot.reach("SELECT count(*) FROM token_losses WHERE model = 'none of them'") == frozenset()
        assert snapshot._spare is spare  # kept for the next reader
    finally:
        states.close()


def test_the_scans_of_a_plan_are_found_at_any_depth_with_their_filters():
    """The shape of ``EXPLAIN (FORMAT json)``: operators with ``children``; a lake scan's
    ``extra_info`` names its table and holds one filter as text or several as a list."""
    scan = reach.SCAN_OPERATOR
    plan = [{"name": "PROJECTION", "extra_info": {"Table": "not a scan"}, "children": [
        {"name": "HASH_JOIN", "children": [
            {"name": scan, "extra_info": {"Table": "token_losses", "Filters": "model='a'"}},
            {"name": "FILTER", "children": [
                {"name": scan, "extra_info": {"Table": "tokens", "Filters": ["corpus='c'", "pos>=1"]}}]}]}]},
        {"name": scan, "extra_info": {"Table": "documents"}}]
    assert sorted(reach.scans(plan)) == [reach.Scan("documents", ()), reach.Scan("token_losses", ("model='a'",)),
                                         reach.Scan("tokens", ("corpus='c'", "pos>=1"))]
    assert reach.scans([]) == [] and reach.scans([{"name": "PROJECTION"}]) == []
    with pytest.raises(KeyError):  # a scan without its table: plan() leaves the statement unconfined
        reach.scans([{"name": scan, "extra_info": {}}])


@pytest.mark.parametrize(("pattern", "prefix"), [
    ("ab%", "ab"), ("a%", "a"), ("a\U0010fffe%", "a\U0010fffe"),
    (None, None), ("", None), ("%", None), ("ab", None),  # no prefix, or no trailing wildcard
    ("a_%", None), ("%a%", None), ("a\\%", None), ("aX%", "aX"),  # another wildcard or an escape
    ("ab\U0010ffff%", None), ("a\U0010ffffb%", "a\U0010ffffb"),  # the last code point has no successor
])
def test_a_like_pattern_gives_a_prefix_only_when_it_is_one(pattern, prefix):
    assert reach._like_prefix(pattern) == prefix


def test_a_poller_keeps_answering_across_more_commits_than_states_are_kept(suite_store, monkeypatch):
    """Each new state reads the metadata through a reader lent by the one before (on PostgreSQL),
    which stays open while the new state lives, even once the state that made it is closed."""
    monkeypatch.setattr(snapshots, "READ_OFF_POSTGRES", False)  # states read through the lake
    sql = NARROWED[0][0]
    expected = suite_store.query(sql, unsafe=True).table
    for index in range(copies.KEEP + 3):
        _commit_losses(suite_store, [("m-c", index, "c-0")])
        assert suite_store.query(sql).table.equals(expected)
        assert suite_store.query_df("SELECT count(*) AS n FROM token_losses WHERE model = 'm-c'")["n"].tolist() == [
            ROWS * (index + 1)]
    newest = copies.shared(suite_store.root).current()
    assert newest._probe is not None and (newest._shown_by is not None) == catalog.locate(suite_store.root).on_postgres
    copies.forget(suite_store.root)
    assert newest._shown_by is None and newest._earlier == []


def _on_postgres(store) -> bool:
    return catalog.locate(store.root).on_postgres


def _read_off(snapshot, plans) -> frozenset[str]:
    """The files ``plans`` reach in a state read off the lake's metadata (postgres_metadata, local_metadata)."""
    if snapshot.locator.on_postgres:
        return postgres_metadata.reached_files(snapshot.locator, snapshot._metadata, snapshot._folder, plans)
    with contextlib.closing(snapshot._probe.cursor()) as cursor:
        return reach.reached_new_files(cursor, snapshot._folder, plans, snapshot._metadata.files, -1, snapshot.state[0])


def _state_read_off(store):
    """The store's newest state read off its metadata (None: it must be read through the lake)."""
    locator = catalog.locate(store.root)
    if locator.on_postgres:
        return postgres_metadata.state(locator, catalog.change_stamp(store.root)[0])
    private = catalog.PrivateCatalog(store.root)
    try:
        with contextlib.closing(private.open_metadata()) as con:
            return local_metadata.state(con, locator)
    finally:
        private.close()


def test_a_first_state_is_read_off_its_metadata_without_attaching_the_lake(suite_store):
    """A process's first state is read off the lake's metadata tables (in PostgreSQL's SQL,
    postgres_metadata; off a local catalog's metadata file, local_metadata): its schema check and
    a partition's files need no attach, and what it reads is what the lake shows."""
    from quanta_db.store import migrations
    from quanta_db.store.sql import statement

    states = copies.Snapshots(suite_store.root)
    try:
        snapshot = states.current()
        assert snapshot._metadata is not None and snapshot._spare is None and snapshot._planner is None
        with catalog.connect(suite_store.root, read_only=True) as con:
            assert snapshot.state == lake.snapshot_identity(con, catalog.locate(suite_store.root))
            lake_facts = (migrations.applied(con), {r[0] for r in con.execute(statement("user_views")).fetchall()},
                          dict(con.execute(statement("saved_query_hashes")).fetchall()))
            assert (snapshot.macros, snapshot._saved) == views.saved_analyses(con)
        assert snapshot.schema_facts() == (list(lake_facts[0]), *lake_facts[1:])
        sql = NARROWED[0][0]
        assert querying.run_on(snapshot, sql).table.equals(suite_store.query(sql, unsafe=True).table)
        (reader,) = snapshot._readers.values()
        assert not reader.attached and reader.paths == _files_where(suite_store, NARROWED[0][2])
        querying.run_on(snapshot, sql)  # the same statement again: the same unattached reader answers it
        assert list(snapshot._readers.values()) == [reader]
        assert snapshot._spare is None and snapshot._planner is None  # the lake was never attached
        # a statement that is not one plain scan attaches it, and answers the same
        joined = NARROWED[4][0]
        assert querying.run_on(snapshot, joined).table.equals(suite_store.query(joined, unsafe=True).table)
        assert any(reader.attached for reader in snapshot._readers.values())
    finally:
        states.close()


def test_an_unattached_reader_reads_only_its_files(suite_store):
    import duckdb

    states = copies.Snapshots(suite_store.root)
    try:
        snapshot = states.current()
        sql, _, keep = NARROWED[0]
        querying.run_on(snapshot, sql)
        (reader,) = snapshot._readers.values()
        other = sorted(_files_where(suite_store, lambda k: not keep(k)))[0]
        for attack in (f"SELECT * FROM read_parquet('{other}')", "SET enable_external_access = true",
                       f"ATTACH '{suite_store.root}/x.duckdb' AS x", "COPY (SELECT 1) TO '/tmp/quanta-x.csv'",
                       f"SELECT * FROM read_blob('{suite_store.root}/catalog.json')",
                       f"SELECT * FROM read_blob('{suite_store.root}/catalog.ducklake')",
                       f"SELECT * FROM read_blob('{suite_store.root}/catalog.readers.ducklake')",
                       f"SELECT * FROM read_blob('{suite_store.root}/tables/../catalog.ducklake')"):
            with pytest.raises(duckdb.Error):
                reader.connection.execute(attack).fetchall()
    finally:
        states.close()


ODD_CORPORA = ('c/"q"', "ü-1", "c\\d", "c-1 ")


@pytest.fixture
def odd_store(tmp_path, catalog_backend, _store_templates):
    """The suite and a second commit of corpora whose names need quoting or escaping (built once a session)."""
    from quanta_db.store.store import Store
    from tests.helpers import fresh_store

    def build(root):
        store = _commit_suite(Store.init(root))
        _commit_losses(store, [("m-a", 1000, corpus) for corpus in ODD_CORPORA] + [("m-b", 0, "c-1")])

    return fresh_store(_store_templates, "reach_odd", tmp_path / "store", catalog_backend, build)


@pytest.mark.parametrize("condition", [
    "corpus = 'c-1'", "corpus IN ('c-0', 'ü-1')", "corpus = 'c/\"q\"'", "corpus = 'c\\d'", "corpus = 'c-1 '",
    "corpus > 'c-1'", "corpus <= 'c/'", "corpus LIKE 'c-%'", "step IN (0, 2000)", "step < 1000", "step >= 2000",
    "model = 'm-a' AND step = 1000 AND corpus = 'ü-1'", "step = 999.6", "model <> 'm-a'",
])
def test_reached_files_read_off_the_metadata_are_those_the_lake_finds(odd_store, condition):
    sql = f"SELECT count(*) FROM token_losses WHERE {condition}"
    plans = reach.one_scan_plan(sandbox.serialised(sql))
    states = copies.Snapshots(odd_store.root)
    try:
        snapshot = states.current()
        read_off = _read_off(snapshot, plans)
        with snapshot.catalog_cursor() as cursor:
            assert read_off == reach.reached_files(cursor, snapshot._folder, plans)
    finally:
        states.close()
    assert odd_store.query(sql).table.equals(odd_store.query(sql, unsafe=True).table)


def test_a_catalog_table_altered_by_a_migration_is_read_across_its_schema_versions(suite_store):
    """DuckLake keeps the rows inlined before a table's schema changed in the metadata table of the
    old schema version: both are read (and a state whose tables cannot be read so is read through the lake)."""
    with suite_store.write() as con:
        con.execute("ALTER TABLE files ADD COLUMN note VARCHAR")
    _commit_losses(suite_store, [("m-a", 1000, "c-9")])
    states = copies.Snapshots(suite_store.root)
    try:
        snapshot = states.current()
        assert snapshot._metadata is not None
        sql = "SELECT count(*) AS v FROM token_losses WHERE model = 'm-a' AND step = 1000"
        assert snapshot.reach(sql) == _files_where(suite_store, lambda k: (k["model"], k["step"]) == ("m-a", 1000))
        assert len(snapshot.reach(sql)) == len(CORPORA) + 1
        assert querying.run_on(snapshot, sql).table.equals(suite_store.query(sql, unsafe=True).table)
    finally:
        states.close()
    with suite_store.write() as con:
        con.execute("ALTER TABLE files RENAME COLUMN keys TO file_keys")
    assert _state_read_off(suite_store) is None


def test_a_state_read_off_postgresql_keeps_the_readers_of_partitions_no_commit_touched(suite_store):
    if not _on_postgres(suite_store):
        pytest.skip("a later local state is read through the lake (its new files off the metadata)")
    shared = copies.shared(suite_store.root)
    sql, _, keep = NARROWED[0]
    assert suite_store.query(sql).table.equals(suite_store.query(sql, unsafe=True).table)
    first = shared.current()
    assert first._metadata is not None and not first._metadata.only_new_files
    _commit_losses(suite_store, [("m-c", 0, "c-5")])  # a file the statement does not reach
    second = shared.current()
    assert second is not first and second._metadata.only_new_files
    assert _answered_by(second, sql, None) == first.state[0]  # by the first state's reader
    assert suite_store.query(sql).table.equals(suite_store.query(sql, unsafe=True).table)
    _commit_losses(suite_store, [("m-a", 1000, "c-1")])  # a second file of its partition
    third = shared.current()
    assert third.reach(sql) == _files_where(suite_store, keep) and len(third.reach(sql)) == 2
    assert _answered_by(third, sql, None) == third.state[0]
    assert suite_store.query(sql).table.equals(suite_store.query(sql, unsafe=True).table)
    with suite_store.write() as con:  # not only new rows: nothing of an earlier state is kept
        con.execute("INSERT INTO saved_queries (name, sql, sha256) VALUES ('other', 'SELECT 1', 'x')")
    fourth = shared.current()
    assert not fourth._metadata.only_new_files and fourth._earlier == [] and "other" in fourth.macros
    assert _answered_by(fourth, sql, None) == fourth.state[0]
    assert suite_store.query(sql).table.equals(suite_store.query(sql, unsafe=True).table)


def test_the_keys_text_test_looks_for_text_keys_compared_for_equality_with_verbatim_constants():
    """What ``verbatim_needles`` gives, written out: only a text key compared with ``=`` or ``IN``
    against string constants that ``json.dumps`` writes as they are."""
    types = {"model": "VARCHAR", "corpus": "VARCHAR", "step": "BIGINT", "odd key": "VARCHAR"}
    condition = reach.Condition
    usable = (condition("model", "=", ("pythia-70m",)), condition("corpus", "IN", ("pile", "dm math")),
              condition("step", "=", ("1000",)), condition("model", ">", ("a",)),
              condition("corpus", "=", ("1",), strings=False), condition("odd key", "=", ("x",)),
              condition("corpus", "=", ('say "hi"',)), condition("corpus", "=", ("naïve",)), condition("model", "IN", ("b",)))
    assert reach.verbatim_needles(usable, types) == [
        ('"model": "', ['"model": "pythia-70m"']),
        ('"corpus": "', ['"corpus": "pile"', '"corpus": "dm math"']),
        ('"model": "', ['"model": "b"']),
    ]
    keys = json.dumps({"corpus": "dm math", "model": "pythia-70m"}, sort_keys=True)  # as runs.py writes them
    assert all(any(text in keys for text in texts) for _, texts in reach.verbatim_needles(usable[:-1], types))


@pytest.mark.parametrize(("condition", "kind", "exact"), [
    (("model", "=", ("a",)), "VARCHAR", True), (("model", "=", ("1",), False), "VARCHAR", False),
    (("step", "=", ("1000",), False), "BIGINT", True), (("step", "IN", ("-3", "0"), False), "INTEGER", True),
    (("step", "<", ("999.6",), False), "BIGINT", False), (("step", "=", ("007",), False), "BIGINT", False),
    (("step", "=", ("1e3",), False), "BIGINT", False), (("step", "=", ("1",)), "BIGINT", True),
    (("n", "=", ("0",), False), "UTINYINT", True), (("n", "=", ("255",), False), "UTINYINT", True),
    (("n", "=", ("256",), False), "UTINYINT", False), (("n", "=", ("-1",), False), "UBIGINT", False),
    (("n", "=", ("-128",), False), "TINYINT", True), (("n", "=", ("-129",), False), "TINYINT", False),
    (("n", "=", (str(2**63),), False), "BIGINT", False), (("n", "IN", ("1", "x"), False), "BIGINT", False),
    (("x", "=", ("1",), False), "DOUBLE", False), (("x", "=", ("0",), False), "DATE", False),
])
def test_a_condition_is_exact_for_text_with_strings_and_integers_written_canonically_in_range(condition, kind, exact):
    """Only those comparisons may leave a file out: DuckDB compares them as written."""
    assert reach.exact(reach.Condition(*condition), kind) is exact


def test_the_planner_of_a_state_reads_no_file_and_holds_the_memory_limit(suite_store):
    """Planning folds constants of user SQL, so its connection is capped like every reader: the
    readers with nothing attached (a first state's direct reads) and the attached ones too."""
    import duckdb

    reference = duckdb.connect()
    reference.execute("SET memory_limit = '123MB'")
    limit = reference.execute("SELECT current_setting('memory_limit')").fetchone()
    states = copies.Snapshots(suite_store.root, memory_limit="123MB")
    try:
        snapshot = states.current()
        querying.run_on(snapshot, NARROWED[0][0])  # read directly, on a reader with nothing attached
        querying.run_on(snapshot, NARROWED[4][0])  # a join: on an attached reader
        planner = snapshot.catalog
        assert planner.execute("SELECT current_setting('memory_limit')").fetchone() == limit
        with pytest.raises(duckdb.PermissionException):
            planner.execute(f"SELECT * FROM read_parquet('{suite_store.committed_paths('token_losses')[0]}')").fetchall()
        readers = list(snapshot._readers.values())
        assert sorted(reader.attached for reader in readers) == [False, True]
        for reader in readers:
            assert reader.connection.execute("SELECT current_setting('memory_limit')").fetchone() == limit
    finally:
        states.close()


def test_the_catalogs_conditions_are_the_exact_ones_each_with_its_parameters():
    """``reach._conditions``: a condition DuckDB may not compare exactly is left out, and those
    after it still count."""
    types = {"model": "VARCHAR", "step": "BIGINT"}
    usable = [reach.Condition("step", "=", ("1.5",), False), reach.Condition("model", "IN", ("a", "b")),
              reach.Condition("model", "=", ("1",), False), reach.Condition("step", ">=", ("10",), False)]
    sql, params = reach._conditions(usable, types)
    assert sql == ("(TRY_CAST(json_extract_string(keys, ?) AS VARCHAR) IN (TRY_CAST(? AS VARCHAR), TRY_CAST(? AS VARCHAR)))"
                   " IS NOT FALSE AND (TRY_CAST(json_extract_string(keys, ?) AS BIGINT) >= (TRY_CAST(? AS BIGINT))) IS NOT FALSE")
    assert params == ['$."model"', "a", "b", '$."step"', "10"]
    assert reach._conditions(usable[:1], types) == ("true", [])


def test_plans_are_kept_for_the_statements_used_last():
    """``reach.Plans``: a full cache drops the plan used least recently, not the one just put."""
    plans = reach.Plans(size=2)
    plans.put(("a", "None"), "plan a", True)
    plans.put(("b", "None"), "plan b", False)
    assert plans.get(("a", "None")) == ("plan a", True)  # a is now the more recent
    plans.put(("c", "None"), "plan c", True)
    assert plans.get(("b", "None")) is reach.UNPLANNED
    assert plans.get(("a", "None")) == ("plan a", True) and plans.get(("c", "None")) == ("plan c", True)


def test_a_state_read_through_the_lake_opens_its_first_connection_on_the_blank_one_it_was_given(suite_store, monkeypatch):
    """``Snapshot._read_state``: a first state read through the lake opens the lake itself (no
    probe of the metadata first), a later state that may only have added files probes its
    metadata first; each on the connection made ahead for it (``blank``), none made anew."""
    monkeypatch.setattr(snapshots, "READ_OFF_METADATA", False)
    monkeypatch.setattr(snapshots, "READ_OFF_POSTGRES", False)
    opened = []

    def recording(name):
        real = getattr(catalog.PrivateCatalog, name)

        def recorded(self, blank=None):
            opened.append((name, blank))
            return real(self, blank)
        return recorded

    for name in ("open", "open_metadata"):
        monkeypatch.setattr(catalog.PrivateCatalog, name, recording(name))
    locator = catalog.locate(suite_store.root)
    blank = catalog.blank_connection(locator)
    first = snapshots.Snapshot(suite_store.root, blank=blank)
    try:
        assert opened == [("open", blank)] and first._blank is None
        _commit_losses(suite_store, [("m-c", 0, "c-0")])
        opened.clear()
        blank = catalog.blank_connection(locator)
        later = snapshots.Snapshot(suite_store.root, blank=blank, previous=first)
        later.close()
        if not locator.on_postgres:  # there, a later state is read on a reader of the previous one
            assert opened[:1] == [("open_metadata", blank)]
    finally:
        first.close()
