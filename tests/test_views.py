"""Saved analyses against pandas computations on the raw Parquet, and the SQLAlchemy engine."""

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from quanta_db.errors import QueryError
from quanta_db.store import views
from tests.helpers import raw_table as _raw


def test_tokens_per_subset_matches_pandas(corpus_store):
    docs = _raw(corpus_store, "documents")
    expected = docs.groupby("subset").agg(n_docs=("doc_id", "size"), n_tokens=("n_tokens", "sum"))
    got = corpus_store.query_df("SELECT * FROM tokens_per_subset").set_index("subset")
    for subset, row in expected.iterrows():
        assert got.loc[subset, "n_docs"] == row["n_docs"]
        assert got.loc[subset, "n_tokens"] == row["n_tokens"]
        assert got.loc[subset, "n_predictable"] == (docs[docs.subset == subset].n_tokens - 1).clip(lower=0).sum()


def test_vocabulary_frequency_matches_counter(corpus_store):
    tokens = _raw(corpus_store, "tokens")
    counts = Counter(tokens["token_id"].tolist())
    got = corpus_store.query_df("SELECT token_id, n, share FROM vocabulary_frequency")
    assert dict(zip(got["token_id"], got["n"])) == counts
    assert got["share"].sum() == pytest.approx(1.0)


def test_document_length_distribution_matches_numpy(corpus_store):
    docs = _raw(corpus_store, "documents")
    got = corpus_store.query_df("SELECT * FROM document_length_distribution").set_index("subset")
    for subset, group in docs.groupby("subset"):
        assert got.loc[subset, "median_tokens"] == pytest.approx(group.n_tokens.median())
        assert got.loc[subset, "p90_tokens"] == pytest.approx(group.n_tokens.quantile(0.9))
        assert got.loc[subset, "n_truncated"] == (group.n_tokens == 128).sum()


def test_parameterised_saved_query(corpus_store):
    got = corpus_store.query_df("SELECT pos, token_id FROM corpus_tokens('toy', document_id := 2)")
    tokens = _raw(corpus_store, "tokens")
    expected = tokens[tokens.doc_id == 2].sort_values("pos")
    assert got["token_id"].tolist() == expected["token_id"].tolist()


def _normalised(frame):
    """Rows as Python values, numbers as floats and every kind of missing as None."""
    def value(v):
        if isinstance(v, (list, tuple, np.ndarray)):
            return list(v)
        if v is None or pd.isna(v):
            return None
        return float(v) if isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) else v
    return [[value(v) for v in row] for row in frame.itertuples(index=False)]


@pytest.mark.slow
def test_every_view_reads_through_sqlalchemy(corpus_store):
    from quanta_db.store.catalog import owner_connection
    from quanta_db.store.store import arrow_to_pandas

    engine = corpus_store.engine()
    names = corpus_store.query_df("SELECT view_name FROM duckdb_views() WHERE NOT internal")["view_name"]
    assert {"tokens", "documents", "vocab", "tokens_per_subset"} <= set(names)
    # One connection each way: the engine's statement check runs per statement all the same.
    with engine.connect() as connection, owner_connection(corpus_store.root) as direct_connection:
        for name in names:
            sql = f'SELECT * FROM "{name}" ORDER BY ALL LIMIT 50'
            frame = pd.read_sql(sql, connection)
            direct = arrow_to_pandas(direct_connection.sql(sql).to_arrow_table())
            assert list(frame.columns) == list(direct.columns)
            assert _normalised(frame) == _normalised(direct), name
    assert len(pd.read_sql("SELECT * FROM tokens", engine)) == len(_raw(corpus_store, "tokens"))
    with pytest.raises(Exception, match="only SELECT"):
        with engine.connect() as con:
            con.exec_driver_sql("CREATE TABLE x (a INT)")


def test_saved_query_header_parsing(tmp_path):
    path = tmp_path / "my_view.sql"
    path.write_text("-- name: my_view\n-- description: Something useful.\n-- parameters: k := 3\n\nSELECT k AS v;\n")
    query = views.parse_saved_query(path)
    assert (query.name, query.description, query.parameters, query.body) == (
        "my_view", "Something useful.", "k := 3", "SELECT k AS v")
    assert query.create_sql().startswith('CREATE OR REPLACE MACRO memory.main."my_view"(k := 3) AS TABLE')
    bare = tmp_path / "bare_view.sql"
    bare.write_text("SELECT 1 AS v")
    bare_query = views.parse_saved_query(bare)
    assert (bare_query.description, bare_query.parameters) == ("", "")
    bad = tmp_path / "other.sql"
    bad.write_text("-- name: not_other\nSELECT 1")
    with pytest.raises(QueryError, match="must be named"):
        views.parse_saved_query(bad)
    shadow = tmp_path / "tokens.sql"
    shadow.write_text("SELECT 1")
    with pytest.raises(QueryError, match="shadow"):
        views.parse_saved_query(shadow)
    noted = tmp_path / "noted.sql"  # comments before the SQL are no part of it; after its start they are
    noted.write_text("-- name: noted\n-- a note on the query\n\n  -- another\nSELECT 1 AS v -- why\n"
                     "-- description: no header once the SQL began\nFROM range(1);\n")
    noted_query = views.parse_saved_query(noted)
    assert (noted_query.description, noted_query.body) == (
        "", "SELECT 1 AS v -- why\n-- description: no header once the SQL began\nFROM range(1)")
    upper = tmp_path / "upper.sql"
    upper.write_text("SELECT 1 AS X;\n")
    assert views.parse_saved_query(upper).body == "SELECT 1 AS X"
    empty = tmp_path / "empty_one.sql"
    empty.write_text("-- name: empty_one\n-- description: nothing follows\n\n;\n")
    with pytest.raises(QueryError) as error:
        views.parse_saved_query(empty)
    assert str(error.value) == "saved query empty_one.sql has no SQL after its header"


def test_saved_analyses_read_back_from_their_rows():
    """Every saved analysis's name (lower case: DuckDB's names are), and those that take
    parameters as the table macros a session creates."""
    from pathlib import Path

    names, macros = views.analyses([("Pane", "k := 1", "SELECT k"), ("plain", "", "SELECT 1")])
    assert names == frozenset({"pane", "plain"})
    assert macros == [views.SavedQuery("Pane", "", "k := 1", "SELECT k", Path("Pane.sql"))]
    assert views.analyses([]) == (frozenset(), [])


def test_a_statement_gets_the_macros_it_calls_directly_or_through_another():
    from pathlib import Path

    def macro(name, body):
        return views.SavedQuery(name, "", "k := 1", body, Path(f"{name}.sql"))

    outer, inner, other = macro("Outer_Pane", "SELECT * FROM inner_pane(k)"), macro("inner_pane", "SELECT k"), \
        macro("other_pane", "SELECT 2")
    looping = [macro("ping", "SELECT * FROM pong(k)"), macro("pong", "SELECT * FROM ping(k)")]
    macros = [other, inner, outer, *looping]
    assert views.called_macros(macros, "SELECT * FROM OUTER_PANE(3)") == [inner, outer]
    assert views.called_macros(macros, "SELECT * FROM inner_pane(1)") == [inner]
    assert views.called_macros(macros, "SELECT * FROM ping(1)") == looping  # each once, however they call each other
    assert views.called_macros(macros, "SELECT 1") == []


def test_saved_queries_are_found_in_nested_folders_once_each(tmp_path):
    (tmp_path / "a" / "deep").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "deep" / "one.sql").write_text("SELECT 1 AS v")
    (tmp_path / "b" / "two.sql").write_text("SELECT 2 AS v")
    (tmp_path / "b" / "notes.txt").write_text("not a query")
    assert [q.name for q in views.discover_saved_queries(tmp_path)] == ["one", "two"]
    (tmp_path / "b" / "one.sql").write_text("SELECT 3 AS v")
    with pytest.raises(QueryError) as error:
        views.discover_saved_queries(tmp_path)
    assert str(error.value) == (f"saved query 'one' is defined twice: {tmp_path / 'a' / 'deep' / 'one.sql'} "
                                f"and {tmp_path / 'b' / 'one.sql'}")
    (tmp_path / "b" / "one.sql").unlink()
    (tmp_path / "b" / "range.sql").write_text("SELECT 4 AS v")  # DuckDB's range(): refused unless names go unchecked
    with pytest.raises(QueryError, match="shadow DuckDB's table function"):
        views.discover_saved_queries(tmp_path)
    assert [q.name for q in views.discover_saved_queries(tmp_path, check_names=False)] == ["one", "range", "two"]


def test_every_shipped_query_has_a_description():
    for query in views.discover_saved_queries():
        assert query.description, query.path.name


def test_open_installs_the_saved_queries_an_upgraded_quanta_db_ships(store):
    from quanta_db.store.store import Store

    with store.write() as con:  # as a store written by an older quanta-db, without these queries
        con.execute("DROP VIEW cluster_sizes")
        con.execute("DELETE FROM saved_queries WHERE name IN ('trajectory_top_tokens', 'cluster_sizes')")
    assert "trajectory_top_tokens" not in set(store.saved_queries().name)
    reopened = Store.open(store.root)
    assert {"trajectory_top_tokens", "cluster_sizes"} <= set(reopened.saved_queries().name)
    assert reopened.query_df("SELECT * FROM trajectory_top_tokens('none', 1)").empty
    assert reopened.query_df("SELECT * FROM cluster_sizes").empty


def test_open_builds_the_views_of_result_tables_an_upgraded_quanta_db_adds(store):
    from quanta_db.store.store import Store

    with store.write() as con:  # as a store written before the heads kind existed
        con.execute("DROP VIEW head_scores")
    reopened = Store.open(store.root)
    assert reopened.query_df("SELECT count(*) AS n FROM head_scores")["n"][0] == 0


def test_views_a_store_lacks_that_cannot_be_built_now_say_to_migrate(store, monkeypatch):
    from quanta_db.errors import StoreError
    from quanta_db.store.store import Store

    with store.write() as con:
        con.execute("DROP VIEW head_scores")

    def locked(self):
        raise StoreError("the catalog is locked by another process")

    monkeypatch.setattr(Store, "refresh_views", locked)
    with pytest.raises(StoreError) as refused:
        Store.open(store.root)
    assert str(refused.value) == "store views are out of date with this quanta-db; run `quanta-db migrate`"


def test_the_saved_analyses_read_at_once_are_the_names_and_the_macros(store):
    from quanta_db.store import sandbox

    with store.read() as con:
        names, macros = views.saved_analyses(con)
        assert names == sandbox.table_macros(con) and macros == views.session_macros(con)
    assert any(macro.parameters for macro in macros) and len(names) > len(macros)  # views and macros both


def test_a_saved_query_that_does_not_bind_is_named_and_recorded_nowhere(store, tmp_path):
    path = tmp_path / "broken_view.sql"
    path.write_text("SELECT no_such_column FROM tokens")
    broken = views.parse_saved_query(path)
    with pytest.raises(QueryError) as refused, store.write() as con:
        views.install_saved_queries(con, [*views.discover_saved_queries(), broken], str(store.root))
    assert str(refused.value).startswith("saved query broken_view.sql does not install: Binder Error")
    assert "broken_view" not in set(store.saved_queries().name)
    assert len(store.saved_queries()) == len(views.discover_saved_queries())


def test_macros_calling_one_another_are_created_in_passes_whatever_their_order():
    """``views.create_macros``: DuckDB binds a table macro when it is created, so one calling
    another defined later fails the first pass and is created in the next; a macro that binds in
    no pass is named with DuckDB's reason."""
    from pathlib import Path

    import duckdb

    def macro(name, body, parameters="x"):
        return views.SavedQuery(name, "", parameters, body, Path(f"{name}.sql"))

    con = duckdb.connect()
    outer, middle = macro("outer_one", "SELECT * FROM middle_one(x)"), macro("middle_one", "SELECT * FROM inner_one(x)")
    views.create_macros(con, [outer, middle, macro("inner_one", "SELECT x AS v"), macro("a_view", "SELECT 1", "")])
    assert con.execute("SELECT v FROM outer_one(41 + 1)").fetchall() == [(42,)]
    assert con.execute("SELECT count(*) FROM duckdb_functions() WHERE function_name = 'a_view'").fetchone() == (0,)
    with pytest.raises(QueryError) as error:
        views.create_macros(duckdb.connect(), [outer, middle])
    assert str(error.value).startswith(
        "saved query outer_one.sql does not install: Catalog Error: Table Function with name middle_one")


def test_a_newer_declaration_adds_its_columns_and_tables_and_their_views(store, monkeypatch):
    """``views.ensure_fact_tables`` on a store an older quanta-db made: a declared column the lake
    table lacks is added (typed as declared, the view listing it in its place), a new table is
    created with its view, and a second pass changes nothing."""
    import pyarrow as pa

    from quanta_db.store.registry import fact_tables
    from quanta_db.store.tables import FactTable

    vocab = fact_tables()["vocab"]
    newer = {"vocab": FactTable("vocab", [*vocab.columns[:2], ("rank", pa.int32()), *vocab.columns[2:]],
                                vocab.partition_by, vocab.description),
             "probe_values": FactTable("probe_values", [("label", pa.string()), ("value", pa.list_(pa.float64()))],
                                       ("label",), "Values a probe wrote.")}
    monkeypatch.setattr(views, "fact_tables", lambda: newer)
    for _ in range(2):
        with store.write() as con:
            views.ensure_fact_tables(con)
    with store.read() as con:
        def columns(name):
            return con.execute(f"DESCRIBE {name}").fetchall()
        assert [row[:2] for row in columns("tables.vocab")] == [
            ("tokenizer", "VARCHAR"), ("token_id", "INTEGER"), ("token", "VARCHAR"), ("rank", "INTEGER")]
        assert [row[:2] for row in columns("main.vocab")] == [
            ("tokenizer", "VARCHAR"), ("token_id", "INTEGER"), ("rank", "INTEGER"), ("token", "VARCHAR")]
        assert [row[:2] for row in columns("tables.probe_values")] == [("label", "VARCHAR"), ("value", "DOUBLE[]")]
        assert [row[:2] for row in columns("main.probe_values")] == [("label", "VARCHAR"), ("value", "DOUBLE[]")]


def test_an_install_drops_the_views_no_longer_shipped_and_names_a_macro_that_does_not_bind(store, tmp_path):
    shipped = views.discover_saved_queries()
    (tmp_path / "old_view.sql").write_text("-- description: Gone in the next release.\nSELECT 1 AS one")
    old = views.parse_saved_query(tmp_path / "old_view.sql")
    with store.write() as con:
        views.install_saved_queries(con, [*shipped, old], str(store.root))
    assert store.query_df("SELECT one FROM old_view")["one"].tolist() == [1]
    with store.write() as con:
        views.install_saved_queries(con, shipped, str(store.root))
    assert "old_view" not in set(store.saved_queries().name)
    with store.read() as con:
        assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'old_view'").fetchone() == (0,)
    (tmp_path / "broken_macro.sql").write_text("-- parameters: n\nSELECT no_such_column + n FROM tokens")
    broken = views.parse_saved_query(tmp_path / "broken_macro.sql")
    assert broken.parameters
    with pytest.raises(QueryError) as refused, store.write() as con:
        views.install_saved_queries(con, [*shipped, broken], str(store.root))
    assert str(refused.value).startswith("saved query broken_macro.sql does not install: Binder Error")
