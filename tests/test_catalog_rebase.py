"""A new store's catalog rows are inlined under its newest schema version, so a new connection
loads the lake's schema once, not twice, to read them (lake.rebase_catalog_tables)."""

from __future__ import annotations

import duckdb
import pytest

from quanta_db.store import catalog, lake
from quanta_db.store.sql import in_transaction


def _stale(store) -> dict[str, bool]:
    with store.read() as con:
        return dict(lake.inlined_catalog_tables(con, catalog.locate(store.root)))


def _catalog_contents(store) -> dict:
    with store.read() as con:
        tables = [name for (name,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = 'lake' AND schema_name = 'main' "
            "ORDER BY table_name").fetchall()]
        return {name: (con.execute(lake.statement("lake_catalog_table_columns"), [name]).fetchall(),
                       sorted(map(repr, con.execute(f"SELECT * FROM main.\"{name}\"").fetchall())))
                for name in tables}


def test_a_new_stores_catalog_rows_are_at_its_newest_schema_version(store):
    stale = _stale(store)
    assert {"schema_migrations", "saved_queries", "store_info"} <= set(stale)  # rows the migrations inlined
    assert not any(stale.values())


def test_a_schema_change_leaves_rows_stale_and_making_the_tables_anew_keeps_rows_columns_and_constraints(corpus_store):
    corpus_store.refresh_views()  # views replaced: a new schema version, after the rows were inlined
    assert any(_stale(corpus_store).values())
    before = _catalog_contents(corpus_store)
    assert any(rows for _, rows in before.values()) and any(
        not nullable for columns, _ in before.values() for *_, nullable in columns)
    with corpus_store.write() as con:
        made = in_transaction(con, lake.rebase_catalog_tables, con, catalog.locate(corpus_store.root))
        assert set(made) == set(_stale(corpus_store))
        assert in_transaction(con, lake.rebase_catalog_tables, con, catalog.locate(corpus_store.root)) == []
    assert not any(_stale(corpus_store).values())
    assert _catalog_contents(corpus_store) == before
    with corpus_store.write() as con, pytest.raises(duckdb.ConstraintException):
        con.execute("INSERT INTO runs (run_id) VALUES ('r-without-kind')")


def _schema_loads(root, sql: str) -> int:
    """How many more times a new connection's DuckLake loads the lake's tables to run ``sql``, after
    the load it made when attached (its metadata queries, as DuckDB 1.5.5's log records them)."""
    with catalog.connect(root, read_only=True) as con:
        con.execute("CALL enable_logging(level = 'trace')")
        con.execute(sql).fetchall()
        con.execute("CALL disable_logging()")
        return con.execute("SELECT count(*) FROM duckdb_logs() WHERE type = 'QueryLog' "
                           "AND message LIKE '%tbl.table_id%'").fetchone()[0]


def test_a_new_connection_loads_the_schema_once_to_read_catalog_rows(store, catalog_backend):
    if catalog_backend != "duckdb":
        pytest.skip("counted in DuckDB's log of the local metadata database's queries")
    read = "SELECT * FROM schema_migrations"
    assert _schema_loads(store.root, read) == 0
    store.refresh_views()
    assert _schema_loads(store.root, read) == 1  # what every commit's connection paid before


def test_a_table_made_anew_keeps_its_column_defaults(store):
    with store.write() as con:
        con.execute("CREATE TABLE main.defaults_kept (a INTEGER DEFAULT 7 NOT NULL, b VARCHAR DEFAULT 'x', c VARCHAR)")
        con.execute("INSERT INTO main.defaults_kept (c) VALUES ('before')")
    store.refresh_views()
    with store.write() as con:
        assert "defaults_kept" in in_transaction(con, lake.rebase_catalog_tables, con, catalog.locate(store.root))
        con.execute("INSERT INTO main.defaults_kept (c) VALUES ('after')")
        assert con.execute("SELECT a, b, c FROM main.defaults_kept ORDER BY c DESC").fetchall() == [
            (7, "x", "before"), (7, "x", "after")]
