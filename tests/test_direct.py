"""Statements that read one partition's files directly (quanta_db/store/direct.py): every answer
equals the owner's unconfined one through the lake, column types included; which statements
read directly and which through the lake is checked, and so is what makes a statement fall back
to the lake (a delete file, a column no file has, too many files, a name the expression would
not stand for)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quanta_db.store import catalog, copies, direct, lake, querying, reach, sandbox
from tests.test_reach import CORPORA, MODELS, ROWS, STEPS, _files_where

pytest_plugins = ["tests.test_reach"]  # its suite_store fixture: one file per (model, step, corpus)


def _runs(monkeypatch, attempts: bool = False) -> list[bool]:
    """Whether each statement run for user SQL from now on read its files directly (``attempts``:
    each one tried, whether it answered or not)."""
    taken = []
    real = querying._execute

    def execute(connection, sql, params, time_limit_ms, max_rows, narrowed=False, direct=False, attached=True):
        if attempts:
            taken.append(direct)
        result = real(connection, sql, params, time_limit_ms, max_rows, narrowed, direct, attached)
        if not attempts:
            taken.append(direct)
        return result

    monkeypatch.setattr(querying, "_execute", execute)
    return taken


def _same_as_the_lake(store, sql: str, params=None):
    confined = store.query(sql, params).table
    assert confined.equals(store.query(sql, params, unsafe=True).table), sql
    return confined


DIRECT = [
    "SELECT avg(loss_nats) AS v FROM token_losses WHERE model = 'm-a' AND step = 1000 AND corpus = 'c-1'",
    "SELECT * FROM token_losses WHERE model = 'm-b' AND step = 2000 AND corpus = 'c-0' ORDER BY doc_id, pos",
    "SELECT t.doc_id, max(t.loss_nats) AS s, count(*) AS n FROM token_losses AS t WHERE t.corpus IN ('c-0', 'c-2') "
    "AND t.step BETWEEN 500 AND 1500 AND t.model = 'm-a' GROUP BY ALL ORDER BY ALL",
    "SELECT count(*) AS v FROM token_losses WHERE corpus LIKE 'c-1%' AND 1000 < step AND model = 'm-b'",
    "FROM token_losses SELECT max(pos) AS p, min(loss_nats) AS m WHERE model = 'm-a' AND step = 0",
    "SELECT token_losses.pos, avg(token_losses.loss_nats) AS v FROM token_losses WHERE model = 'm-b' "
    "AND step = 0 AND corpus = 'c-2' GROUP BY 1 ORDER BY 1 LIMIT 3",
    # no file can hold such rows: an empty answer of the lake's column types
    "SELECT * FROM token_losses WHERE model = 'none of them'",
    "SELECT count(*) AS v, avg(loss_nats) AS a FROM token_losses WHERE step = 7",
]
THROUGH_THE_LAKE = [
    "SELECT count(*) AS v FROM main.token_losses WHERE model = 'm-a' AND step = 0",  # a qualified name
    "EXPLAIN SELECT count(*) AS v FROM token_losses WHERE model = 'm-a' AND step = 0",  # its plan is the lake's
    "SELECT count(*) AS v FROM token_losses a JOIN token_losses b USING (doc_id, pos, corpus) "
    "WHERE a.model = 'm-a' AND a.step = 0 AND b.model = 'm-b' AND b.step = 2000",
    "SELECT count(*) AS v FROM runs",  # a catalog table
    "SELECT avg(value) AS v FROM token_pane_loss('c-2', 'm-a', 2000)",  # a saved analysis
    # the lake's own clauses on the table: a state of its history, a sample of its rows
    "SELECT count(*) AS v FROM token_losses AT (TIMESTAMP => now()) WHERE model = 'm-a' AND step = 0 AND corpus = 'c-1'",
    "SELECT count(*) AS v FROM token_losses TABLESAMPLE 100 PERCENT (bernoulli) "
    "WHERE model = 'm-a' AND step = 0 AND corpus = 'c-1'",
]


@pytest.mark.parametrize("sql", DIRECT)
def test_a_partition_read_directly_answers_as_the_lake(suite_store, monkeypatch, sql):
    taken = _runs(monkeypatch)
    confined = _same_as_the_lake(suite_store, sql)
    assert taken[0] is True and len(taken) == 2  # read directly; then the owner's statement, through the lake
    assert confined.schema.equals(suite_store.query(sql, unsafe=True).table.schema)


def test_parameters_are_bound_through_the_lake_and_an_empty_list_is_no_parameters(suite_store, monkeypatch):
    taken = _runs(monkeypatch)
    sql = "SELECT count(*) AS n FROM token_losses WHERE model = ? AND step = ?"
    assert _same_as_the_lake(suite_store, sql, ["m-b", 2000])["n"].to_pylist() == [ROWS * len(CORPORA)]
    assert taken[0] is False  # planned by DuckDB with the values bound: the text holds no constants to read
    taken.clear()
    sql = "SELECT max(loss_nats) AS v FROM token_losses WHERE model = 'm-b' AND step = 1000 AND corpus = 'c-2' AND pos > 0"
    _same_as_the_lake(suite_store, sql, [])
    assert taken[0] is True


def test_a_statement_with_parameters_is_planned_once_with_them(suite_store, monkeypatch):
    planned = []
    real = reach.plan
    monkeypatch.setattr(reach, "plan", lambda connection, sql, params: planned.append(params) or real(connection, sql, params))
    sql = "SELECT count(*) AS planned_once FROM token_losses WHERE model = ? AND step = ?"
    assert suite_store.query(sql, ["m-a", 1000]).table["planned_once"].to_pylist() == [ROWS * len(CORPORA)]
    assert planned == [["m-a", 1000]]  # asked whether it reads directly, it is the same plan
    suite_store.query(sql, ["m-a", 1000])
    assert suite_store.query(sql, ["m-b", 0]).table["planned_once"].to_pylist() == [ROWS * len(CORPORA)]
    assert planned == [["m-a", 1000], ["m-b", 0]]  # planned once for each list of values


def test_a_statement_a_named_expression_would_change_is_not_tried_directly(suite_store, monkeypatch):
    tried = _runs(monkeypatch, attempts=True)
    _same_as_the_lake(suite_store, "WITH a AS (SELECT 1) SELECT count(*) AS v FROM token_losses "
                                   "WHERE model = 'm-a' AND step = 0 AND corpus = 'c-1'")
    assert tried == [False, False]  # confined, then the owner's through the lake


@pytest.mark.parametrize("sql", THROUGH_THE_LAKE)
def test_other_statements_read_through_the_lake(suite_store, monkeypatch, sql):
    taken = _runs(monkeypatch)
    answer = suite_store.query(sql).table
    assert taken == [False]
    if not sql.startswith("EXPLAIN"):
        assert answer.equals(suite_store.query(sql, unsafe=True).table)


# Constants DuckDB does not compare with a key exactly as written: the files they reach must
# include every file with a matching row (DuckDB casts '999.6' to the integer 1000, while
# step > 999.6 holds for step 1000; a text key compared with a number is cast to the number).
INEXACT = [
    ("SELECT count(*) AS v FROM token_losses WHERE step > 999.6", lambda k: k["step"] > 999.6),
    ("SELECT count(*) AS v FROM token_losses WHERE step <= 1000.4", lambda k: k["step"] <= 1000.4),
    ("SELECT count(*) AS v FROM token_losses WHERE step < 1e3", lambda k: k["step"] < 1000),
    ("SELECT count(*) AS v FROM token_losses WHERE step IN (1000.0, 2000)", lambda k: k["step"] in (1000, 2000)),
    ("SELECT count(*) AS v FROM token_losses WHERE step = '01000'", lambda k: k["step"] == 1000),
    ("SELECT count(*) AS v FROM token_losses WHERE step BETWEEN '999.5' AND 2000", lambda k: 1000 <= k["step"] <= 2000),
    ("SELECT count(*) AS v FROM token_losses WHERE model = CAST('m-a' AS VARCHAR) AND step = CAST(2000 AS BIGINT)",
     lambda k: k["model"] == "m-a" and k["step"] == 2000),
]


@pytest.mark.parametrize(("sql", "matching"), INEXACT)
def test_constants_compared_inexactly_never_leave_out_a_file_with_matching_rows(suite_store, monkeypatch, sql, matching):
    reached = copies.shared(suite_store.root).current().reach(sql)
    assert reached >= _files_where(suite_store, matching)
    taken = _runs(monkeypatch)
    answer = _same_as_the_lake(suite_store, sql)
    assert answer["v"].to_pylist() == [ROWS * len(_files_where(suite_store, matching))]
    assert taken[0] is True


def test_only_constants_compared_exactly_narrow_what_is_reached():
    condition = reach.Condition
    assert reach.exact(condition("step", "=", ("1000",), False), "BIGINT")
    assert reach.exact(condition("step", "IN", ("-3", "0"), False), "BIGINT")
    for text in ("999.6", "1000.0", "01000", "+1", " 1", "1e3", "9223372036854775808", ""):
        assert not reach.exact(condition("step", "=", (text,), False), "BIGINT"), text
    assert not reach.exact(condition("step", "=", ("300",), True), "TINYINT")  # out of the type's range
    assert reach.exact(condition("model", "=", ("5",), True), "VARCHAR")
    assert not reach.exact(condition("model", "=", ("5",), False), "VARCHAR")  # DuckDB casts the key to the number
    assert not reach.exact(condition("x", "=", ("1.5",), False), "DOUBLE")  # other types are not compared


def test_a_table_with_a_delete_file_is_read_through_the_lake(suite_store, monkeypatch):
    sql = "SELECT count(*) AS v FROM token_losses WHERE model = 'm-a' AND step = 0 AND corpus = 'c-0'"
    with suite_store.write() as con:  # rows dropped from inside a file: the lake writes a delete file
        con.execute("DELETE FROM tables.token_losses WHERE pos = 1")
    snapshot = copies.shared(suite_store.root).current()
    assert "token_losses" in snapshot.deleted and snapshot._metadata is None  # on PostgreSQL too
    taken = _runs(monkeypatch)
    assert _same_as_the_lake(suite_store, sql)["v"].to_pylist() == [ROWS - ROWS // 5]
    assert taken == [False, False]
    with catalog.connect(suite_store.root, read_only=True, user_sql=True) as con:  # the SQLAlchemy engine's
        assert con.execute(sql).fetchone()[0] == ROWS - ROWS // 5  # confined to the delete file too


def test_a_statement_that_does_not_bind_directly_runs_through_the_lake(suite_store, monkeypatch):
    sql = "SELECT count(*) AS v, count(loss_nats) AS n FROM token_losses WHERE model = 'm-b' AND step = 1000"
    real = direct._select
    # as for a column the table declares and no file read has: binding the expression fails
    monkeypatch.setattr(direct, "_select", lambda table, paths: real(table, paths).replace('"loss_nats"', '"absent"', 1))
    taken = _runs(monkeypatch)
    assert _same_as_the_lake(suite_store, sql)["v"].to_pylist() == [ROWS * len(CORPORA)]
    assert taken == [False, False]  # the direct statement failed (not counted), then the lake answered


def test_a_column_missing_from_some_files_reads_as_null_as_in_the_lake(tmp_path):
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    with_column, without = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(pa.table({"x": [1, 2], "y": [0.5, 1.5]}), with_column)
    pq.write_table(pa.table({"x": [3]}), without)
    rows = duckdb.connect().execute(f"SELECT x, y FROM read_parquet(['{with_column}', '{without}'], union_by_name = true, "
                                    "hive_partitioning = false) ORDER BY x").fetchall()
    assert rows == [(1, 0.5), (2, 1.5), (3, None)]


def test_a_statement_reaching_many_files_reads_through_the_lake(suite_store, monkeypatch):
    monkeypatch.setattr(direct, "MAX_FILES", 2)
    taken = _runs(monkeypatch)
    _same_as_the_lake(suite_store, "SELECT count(*) AS v FROM token_losses WHERE model = 'm-a' AND step = 0")  # 3 files
    _same_as_the_lake(suite_store, "SELECT count(*) AS v FROM token_losses WHERE model = 'm-a' AND step = 0 "
                                   "AND corpus <> 'c-0' AND corpus IN ('c-1', 'c-2')")  # 2 files
    assert taken == [False, False, True, False]


@pytest.mark.parametrize(("sql", "keeps"), [
    ("SELECT 1 FROM token_losses", True),
    ("  -- a comment\nFROM token_losses SELECT 1;", True),
    ("(SELECT 1 FROM token_losses)", True),
    ("WITH a AS (SELECT 1) SELECT 1 FROM token_losses", False),  # a second WITH does not parse
    ("SELECT 1 FROM token_losses WHERE 'token_losses' <> ''", True),
    ("SELECT 1 FROM token_losses; SELECT 2", False),
    ("SELEC 1 FROM token_losses", False),  # neither text parses
    (", more AS (SELECT 2) SELECT 1 FROM token_losses", False),  # parses only behind the expression
])
def test_a_statement_reads_directly_only_when_the_expression_keeps_its_meaning(sql, keeps):
    assert direct.keeps_meaning(sql, "token_losses", sandbox.serialised(sql)) is keeps


def test_paths_are_quoted_in_the_expression():
    text = direct._select("token_losses", ["/s/it's.parquet"])
    assert "'/s/it''s.parquet'" in text
    assert sandbox.serialised(text).get("error") is False


keys = st.sampled_from(["model", "step", "corpus"])
VALUES = {"model": [*MODELS, "m-c", 5], "step": [*STEPS, 999.6, 1000.4, "1000", 1500, -1],
          "corpus": [*CORPORA, "c-", "c-10"]}
OPS = ["=", "<", "<=", ">", ">=", "<>"]


def _literal(value) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


@st.composite
def conditions(draw) -> str:
    key = draw(keys)
    form = draw(st.sampled_from(["compare", "in", "between", "like"]))
    values = VALUES[key]
    if form == "in":
        return f"{key} IN ({', '.join(_literal(v) for v in draw(st.lists(st.sampled_from(values), min_size=1, max_size=3)))})"
    if form == "between":
        return f"{key} BETWEEN {_literal(draw(st.sampled_from(values)))} AND {_literal(draw(st.sampled_from(values)))}"
    if form == "like" and key != "step":
        return f"{key} LIKE '{draw(st.sampled_from(['c-', 'm-', 'c-1', 'm-b', 'x']))}%'"
    return f"{key} {draw(st.sampled_from(OPS))} {_literal(draw(st.sampled_from(values)))}"


@settings(max_examples=40, deadline=None, derandomize=True, database=None,  # the same examples on every machine
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(conditions(), min_size=1, max_size=3))
def test_any_conjunction_of_key_filters_answers_as_the_lake(suite_store, filters):
    # (no sum: the order in which files are added up may differ in the last bits)
    sql = f"SELECT count(*) AS v, min(loss_nats) AS lo, max(doc_id) AS d FROM token_losses WHERE {' AND '.join(filters)}"
    try:
        expected = suite_store.query(sql, unsafe=True).table
    except Exception as error:  # noqa: BLE001 - a filter DuckDB refuses (a text key cast to a number)
        with pytest.raises(type(error)):
            suite_store.query(sql)
        return
    assert suite_store.query(sql).table.equals(expected), sql


def test_delete_files_are_told_apart_by_table(suite_store):
    import pyarrow as pa

    with suite_store.begin_run("vocab", {"for": "deletes"}) as run:
        run.write("vocab", pa.table({"tokenizer": ["t"] * 5, "token_id": list(range(5)), "token": list("abcde")}))
        run.commit()
    with suite_store.write() as con:  # rows dropped from inside files of two tables: a delete file each
        con.execute("DELETE FROM tables.token_losses WHERE pos = 1")
        con.execute("DELETE FROM tables.vocab WHERE token_id = 0")
    with suite_store.read() as con:
        by_table = lake.delete_files_by_table(con)
    assert sorted(by_table) == ["token_losses", "vocab"]
    for table, paths in by_table.items():
        assert paths and all(f"/tables/{table}/" in path for path in paths), (table, paths)


def test_the_planner_reads_no_file_not_even_a_delete_file(suite_store):
    """The connection that plans statements is confined to no file at all, the lake's delete files
    included (every other reader may read those of the files it reads)."""
    import duckdb

    with suite_store.write() as con:
        con.execute("DELETE FROM tables.token_losses WHERE pos = 1")
        deletes = lake.delete_files(con)
    (delete_file, *_) = deletes
    snapshot = copies.shared(suite_store.root).current()
    assert sorted(snapshot.deletes) == sorted(deletes) and snapshot.deleted == frozenset({"token_losses"})
    with pytest.raises(duckdb.Error, match="[Pp]ermission|not allowed|disabled"):
        snapshot._planning().connection.execute(f"SELECT count(*) FROM read_parquet('{delete_file}')").fetchall()


def test_a_tree_is_compared_without_the_offsets_of_its_parts():
    """``direct._located``: the text offsets of a serialised statement's parts are left out at any
    depth, and nothing else is (the same statement after a prefix differs only in them)."""
    tree = {"query_location": 7, "type": "SELECT_NODE", "from": [{"query_location": 21, "table": "t"}, 3],
            "where": {"left": {"query_location": 40, "value": None}}}
    assert direct._located(tree) == {"type": "SELECT_NODE", "from": [{"table": "t"}, 3], "where": {"left": {"value": None}}}
    plain, prefixed = (sandbox.serialised(sql)["statements"][0]["node"]
                       for sql in ("SELECT 1 FROM token_losses WHERE a = 1", "  SELECT 1 FROM token_losses WHERE a = 1"))
    assert plain != prefixed and direct._located(plain) == direct._located(prefixed)
    assert direct._located(plain) != direct._located(sandbox.serialised("SELECT 1 FROM token_losses WHERE a = 2")
                                                      ["statements"][0]["node"])
