"""Every kind of DuckDB statement, plain and wrapped, through every entry point of user SQL, leaves
every file of the store as it was; and the connection alone (statement check switched off) still
refuses to write into the store."""

from __future__ import annotations

import functools
import hashlib
import os

import pandas as pd
import pytest
from click.testing import CliRunner

from quanta_db.cli.main import cli
from quanta_db.errors import QueryError
from quanta_db.store import sandbox
from quanta_db.store.lake import CATALOG_ENV
from quanta_db.store.store import Store
from tests.helpers import POSTGRES_ENV, catalog_backends, drop_postgres_stores

# One statement of every type DuckDB's parser knows that can be written in SQL, aimed at the store.
STATEMENTS = {
    "copy_new_file": "COPY (SELECT 1 AS x) TO '{root}/tables/evil.parquet'",
    "copy_rewrite": "COPY (SELECT * REPLACE (0 AS pos) FROM read_parquet('{victim}')) TO '{victim}' (FORMAT parquet)",
    "copy_rewrite_in_place": "COPY (SELECT 1 AS x) TO '{victim}' (FORMAT parquet, USE_TMP_FILE false)",
    "copy_overwrite_folder": "COPY (SELECT 1 AS a) TO '{root}/tables/documents' (FORMAT parquet, PARTITION_BY (a), OVERWRITE)",
    "copy_catalog": "COPY (SELECT 1 AS x) TO '{root}/catalog.ducklake' (USE_TMP_FILE false)",
    "copy_from": "COPY documents FROM '{victim}'",
    "export": "EXPORT DATABASE '{root}/tables/export'",
    "import": "IMPORT DATABASE '{root}/tables'",
    "attach": "ATTACH '{root}/tables/new.duckdb' AS new",
    "detach": "DETACH lake",
    "detach_metadata": "DETACH __ducklake_metadata_lake",
    "lake_option": "CALL lake.set_option('data_inlining_row_limit', 5)",
    "lake_function": "SELECT * FROM ducklake_flush_inlined_data('lake')",
    "lake_expire": "SELECT * FROM ducklake_expire_snapshots('lake', older_than => now())",
    "read_metadata": "SELECT * FROM __ducklake_metadata_lake.ducklake_data_file",
    "read_metadata_schema": "SELECT * FROM __ducklake_metadata_lake.main.ducklake_snapshot",
    "read_metadata_by_name": "SELECT * FROM query_table('__ducklake_metadata_lake.ducklake_snapshot')",
    "postgres_query": "SELECT * FROM postgres_query('__ducklake_metadata_lake', 'SELECT 1 AS x')",
    "postgres_execute": "CALL postgres_execute('__ducklake_metadata_lake', 'CREATE TABLE evil (a INT)')",
    "postgres_scan": "SELECT * FROM postgres_scan('dbname=postgres host=127.0.0.1', 'public', 'x')",
    "install": "INSTALL httpfs",
    "load": "LOAD parquet",
    "load_file": "LOAD '{victim}'",  # a file the connection may read, loaded as an (unsigned) extension
    "set": "SET enable_external_access = true",
    "set_directories": "SET allowed_directories = ['/']",
    "reset": "RESET lock_configuration",
    "set_variable": "SET VARIABLE x = 1",
    "create_table": "CREATE TABLE evil AS SELECT 1 AS x",
    "create_view": "CREATE OR REPLACE VIEW tokens AS SELECT 1 AS x",
    "create_macro": "CREATE MACRO m(a) AS a",
    "create_secret": "CREATE SECRET s (TYPE s3, KEY_ID 'k', SECRET 'v')",
    "insert": "INSERT INTO runs (run_id) VALUES ('x')",
    "update": "UPDATE runs SET status = 'x'",
    "delete": "DELETE FROM files",
    "merge": "MERGE INTO runs USING (SELECT 'x' AS run_id) s ON runs.run_id = s.run_id WHEN MATCHED THEN DELETE",
    "drop": "DROP VIEW tokens",
    "alter": "ALTER VIEW tokens RENAME TO gone",
    "comment": "COMMENT ON VIEW tokens IS 'x'",
    "call": "CALL pragma_version()",
    "pragma": "PRAGMA version",
    "checkpoint": "CHECKPOINT",
    "vacuum": "VACUUM",
    "analyze": "ANALYZE",
    "transaction": "BEGIN TRANSACTION",
    "prepare": "PREPARE p AS SELECT 1",
    "execute": "EXECUTE p",
    "deallocate": "DEALLOCATE p",
    "use": "USE memory",
    "update_extensions": "UPDATE EXTENSIONS",
    "pivot": "PIVOT documents ON corpus USING count(*)",
    "two_statements": "SELECT 1; COPY (SELECT 1 AS x) TO '{root}/tables/evil.parquet'",
    "query_function": "SELECT * FROM query('COPY (SELECT 1 AS x) TO ''{root}/tables/evil.parquet''')",
    "cte_copy": "WITH w AS (COPY (SELECT 1 AS x) TO '{root}/tables/evil.parquet') SELECT * FROM w",
    "cte_copy_rewrite": "WITH w AS (COPY (SELECT 1 AS x) TO '{victim}' (FORMAT parquet)) SELECT 1",
    "cte_delete": "WITH w AS (DELETE FROM files RETURNING *) SELECT * FROM w",
    "cte_insert": "WITH w AS (INSERT INTO runs (run_id) VALUES ('x') RETURNING *) SELECT 1",
    "cte_update": "WITH w AS (UPDATE runs SET status = 'x' RETURNING *) SELECT 1",
    "nested_cte_copy": "SELECT * FROM (WITH w AS (COPY (SELECT 1 AS x) TO '{root}/tables/evil.parquet') SELECT * FROM w) t",
    "serialized_sql": "SELECT * FROM json_execute_serialized_sql(json_serialize_sql('SELECT 1'))",
    "checkpoint_function": "SELECT * FROM checkpoint()",
    "profiling": "SELECT * FROM enable_profiling()",
    "logging": "SELECT * FROM enable_logging()",
    "read_outside": "SELECT * FROM read_text('/etc/hostname')",
    "read_staging": "SELECT * FROM read_text('{root}/staging/secret.txt')",
    "read_dotdot": "SELECT * FROM read_text('{root}/tables/../staging/secret.txt')",
    "glob_store": "SELECT * FROM glob('{root}/*')",
    "read_catalog": "SELECT content FROM read_blob('{root}/catalog.ducklake')",
    "read_catalog_dotdot": "SELECT content FROM read_blob('{root}/tables/../catalog.ducklake')",
    "read_catalog_wal": "SELECT content FROM read_blob('{root}/catalog.ducklake.wal')",
    "read_copy": "SELECT content FROM read_blob((SELECT path FROM duckdb_databases() WHERE path IS NOT NULL LIMIT 1))",
}
WRAPPERS = {
    "plain": "{}",
    "explain": "EXPLAIN {}",
    "explain_analyze": "EXPLAIN ANALYZE {}",
    "explain_analyse_options": "EXPLAIN (FORMAT json) ANALYSE {}",
    "subquery": "SELECT * FROM ({}) t",
    "cte": "WITH t AS ({}) SELECT * FROM t",
    "cte_then": "WITH t AS (SELECT 1) {}",
}


def _hashes(root) -> dict:
    """Every file of the store, and the lake's latest snapshot (its catalog may be on PostgreSQL)."""
    from tests.helpers import snapshot

    hashes = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
              for p in sorted(root.rglob("*")) if p.is_file()}
    return {**hashes, "lake_snapshot": snapshot(Store(root))["lake_snapshot"]}


@pytest.fixture(scope="module", params=catalog_backends())
def walled_store(request, tmp_path_factory, toy_inputs):
    """A store on each catalog backend (tests/conftest.py), with a staged file beside it."""
    from quanta_db.results.corpus.job import ingest_corpus
    from quanta_db.store.store import Store

    with pytest.MonkeyPatch.context() as patch:
        if request.param == "postgresql":
            patch.setenv(CATALOG_ENV, os.environ[POSTGRES_ENV])
        else:
            patch.delenv(CATALOG_ENV, raising=False)
        store = Store.init(tmp_path_factory.mktemp("walls") / "store")
        ingest_corpus(store, toy_inputs["corpus"], "toy", str(toy_inputs["tokenizer"]), max_tokens=128,
                      progress=False)
    (store.root / "staging").mkdir(exist_ok=True)
    (store.root / "staging" / "secret.txt").write_text("staged, not committed\n")
    yield store
    if request.param == "postgresql":
        drop_postgres_stores(store.root)


@pytest.fixture(scope="module")
def http(walled_store):
    from starlette.testclient import TestClient

    from quanta_db.serve.app import Settings, create_app

    with TestClient(create_app(Settings(walled_store.root)), base_url="http://localhost") as client:
        yield client


@pytest.fixture(scope="module")
def untouched(walled_store):
    """The store's files and snapshot as made: no test of this module may change them, so each
    compares with this (a change is caught by the test that made it)."""
    return _hashes(walled_store.root)


@functools.cache
def _victim(root) -> str:
    """A committed file of the store (the store never changes here, so it is looked up once)."""
    return Store.open(root).committed_paths("documents")[0].as_posix()


def _sql(store, template: str) -> list[str]:
    statement = template.format(root=store.root.as_posix(), victim=_victim(store.root))
    return [wrapper.format(statement) for wrapper in WRAPPERS.values()]


@pytest.fixture(scope="module")
def engine_connection(walled_store):
    """One connection of the SQLAlchemy engine (confined when the engine opened it): each
    statement is checked on its own all the same, and rolled back after its refusal."""
    with walled_store.engine().connect() as connection:
        yield connection


def _refused_everywhere(store, http, connection, sql: str) -> None:
    """``connection``: one of the SQLAlchemy engine's, rolled back after each refusal."""
    with pytest.raises(QueryError):
        store.query_arrow(sql)
    refusals = "only SELECT|only queries that read|one SQL statement|explained|Permission|Parser|Binder|Catalog"
    with pytest.raises(Exception, match=refusals):
        pd.read_sql(sql, connection)
    connection.rollback()
    result = CliRunner().invoke(cli, ["--store", str(store.root), "query", sql])
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1, (sql, result.output)
    assert http.get("/api/query", params={"sql": sql}).status_code == 400, sql
    assert http.get("/download", params={"sql": sql, "format": "csv"}).status_code == 400, sql
    assert http.get("/sql", params={"sql": sql}).status_code == 400, sql


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_no_statement_changes_the_store_through_any_entry_point(walled_store, untouched, http, engine_connection,
                                                                name):
    for sql in _sql(walled_store, STATEMENTS[name]):
        _refused_everywhere(walled_store, http, engine_connection, sql)
    assert _hashes(walled_store.root) == untouched
    assert not (walled_store.root / "tables" / "evil.parquet").exists()


@pytest.mark.parametrize("sql", ["", "   ", ";", ";;", "-- only a comment", "/* only a comment */"])
def test_empty_queries_get_one_line(walled_store, http, sql):
    with pytest.raises(QueryError, match="no SQL statement"):
        walled_store.query_arrow(sql)
    result = CliRunner().invoke(cli, ["--store", str(walled_store.root), "query", "--", sql])
    assert result.exit_code != 0 and "no SQL statement" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_reads_still_pass_every_wrapper(walled_store, http):
    for sql in ["SELECT count(*) AS n FROM tokens", "EXPLAIN SELECT * FROM tokens",
                "EXPLAIN ANALYZE SELECT count(*) FROM tokens", "EXPLAIN (FORMAT json) SELECT 1",
                "WITH t AS (SELECT * FROM documents) SELECT count(*) AS n FROM t",
                "SELECT * FROM (SELECT 1 AS x) t", "DESCRIBE tokens", "SUMMARIZE SELECT 1 AS x"]:
        assert walled_store.query_arrow(sql).num_rows >= 1, sql
        assert http.get("/api/query", params={"sql": sql}).status_code == 200, sql


def test_an_artifact_is_readable_through_user_sql(walled_store, tmp_path):
    import numpy as np

    from quanta_db.store.store import Store

    store = Store.init(tmp_path / "store")
    with store.begin_run("test_artifact", {"n": 1}) as run:
        run.write_artifact("values", np.arange(5, dtype=np.float32))
        run.commit()
    (path,) = [store.root / p for p in store.query_df("SELECT path FROM files WHERE table_name = 'artifact'").path]
    blob = store.query_arrow(f"SELECT content FROM read_blob('{path.as_posix()}')").column(0)[0].as_py()
    assert blob == path.read_bytes()


# (Not ``lake_option``: DuckLake 1.5.5 crashes the process on ``CALL lake.set_option`` against a
# read-only lake; only the statement check stands between user SQL and that call.)
# What the connection refuses on its own, with the statement check switched off: every write that
# creates, replaces or removes a file of the store, or touches the catalog.
CONNECTION_REFUSES = ["copy_new_file", "copy_rewrite", "copy_overwrite_folder", "copy_catalog", "export", "attach",
                      "install", "load_file", "set", "set_directories", "reset", "create_table", "insert", "delete", "drop",
                      "lake_function", "lake_expire", "postgres_execute",
                      "read_outside", "read_staging", "read_dotdot", "glob_store", "read_catalog",
                      "read_catalog_dotdot", "read_catalog_wal", "read_copy"]


@pytest.mark.parametrize("name", CONNECTION_REFUSES)
def test_the_connection_alone_refuses_writes_and_foreign_reads(walled_store, untouched, monkeypatch, name):
    monkeypatch.setattr(sandbox, "check_read_only", lambda sql, macros=frozenset(): None)
    statement = _sql(walled_store, STATEMENTS[name])[0]
    for sql in (statement, f"EXPLAIN ANALYZE {statement}"):
        with pytest.raises(QueryError):
            walled_store.query_arrow(sql)
    assert _hashes(walled_store.root) == untouched


@pytest.mark.xfail(strict=True, reason="DuckDB's allowed_paths cannot tell a read from a write: in a Python "
                                       "process a committed file may be overwritten in place without a "
                                       "temporary file; there only the statement check stops this (the "
                                       "quanta-db query process has the kernel wall; docs/security.md)")
def test_the_connection_alone_cannot_stop_an_in_place_rewrite(walled_store, monkeypatch, tmp_path):
    import shutil

    from quanta_db.store.store import Store

    copy = Store.open(shutil.copytree(walled_store.root, tmp_path / "copy"))
    monkeypatch.setattr(sandbox, "check_read_only", lambda sql, macros=frozenset(): None)
    before = _hashes(copy.root)
    with pytest.raises(QueryError):
        copy.query_arrow(_sql(copy, STATEMENTS["copy_rewrite_in_place"])[0])
    assert _hashes(copy.root) == before


KERNEL_WALL_CHILD = """
import sys
from quanta_db.store import sandbox
from quanta_db.store.lake import CATALOG_ENV
from quanta_db.store.store import Store
from tests.helpers import POSTGRES_ENV, catalog_backends, drop_postgres_stores
if sys.argv[1] == "no-walls":  # both walls above the kernel's taken down, as a bug would
    sandbox.check_read_only = lambda sql, macros=frozenset(): None
    sandbox.restrict = lambda con, root, *args, **kwargs: None
from quanta_db.cli.main import main
sys.argv = ["quanta-db", *sys.argv[2:]]
main()
"""


def _quanta_db_process(*args):
    import subprocess
    import sys
    from pathlib import Path

    return subprocess.run([sys.executable, "-c", KERNEL_WALL_CHILD, *map(str, args)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent)


def test_the_kernel_refuses_the_query_process_an_in_place_rewrite(walled_store, untouched, tmp_path):
    from quanta_db.store.kernel_wall import landlock_abi

    if not landlock_abi():
        pytest.skip("Landlock is not available on this kernel")
    sql = _sql(walled_store, STATEMENTS["copy_rewrite_in_place"])[0]
    done = _quanta_db_process("no-walls", "--store", walled_store.root, "query", sql)
    assert done.returncode != 0 and "Permission denied" in done.stdout + done.stderr, done.stdout + done.stderr
    assert _hashes(walled_store.root) == untouched
    out = tmp_path / "n.csv"  # the same process still writes its -o file, and only that
    done = _quanta_db_process("walls", "--store", walled_store.root, "query", "SELECT count(*) AS n FROM tokens",
                              "--format", "csv", "-o", out)
    assert done.returncode == 0, done.stderr
    assert out.read_text().splitlines()[0] == "n"


def test_the_kernel_refuses_the_server_process_an_in_place_rewrite(walled_store):
    """`quanta-db serve` with the statement check and the connection wall taken down: the kernel
    still refuses the in-place rewrite, while queries (whose private catalog copies are written to
    the process's scratch folder) are answered."""
    import socket
    import subprocess
    import sys
    import time
    from pathlib import Path

    import httpx

    from quanta_db.store.kernel_wall import landlock_abi

    if not landlock_abi():
        pytest.skip("Landlock is not available on this kernel")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = _hashes(walled_store.root)
    server = subprocess.Popen([sys.executable, "-c", KERNEL_WALL_CHILD, "no-walls", "--store", str(walled_store.root),
                               "serve", "--port", str(port)], cwd=Path(__file__).resolve().parent.parent,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=f"http://localhost:{port}", timeout=30) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    ok = http.get("/api/query", params={"sql": "SELECT count(*) AS n FROM tokens"})
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline and server.poll() is None, server.stdout.read()
                    time.sleep(0.2)
            assert ok.status_code == 200 and ok.json()["rows"][0][0] > 0, ok.text
            sql = _sql(walled_store, STATEMENTS["copy_rewrite_in_place"])[0]
            refused = http.get("/api/query", params={"sql": sql})
            assert refused.status_code == 400 and "Permission denied" in refused.text, refused.text
            assert http.get("/api/query", params={"sql": "SELECT count(*) AS n FROM documents"}).status_code == 200
    finally:
        server.terminate()
        server.wait(10)
    assert _hashes(walled_store.root) == before
