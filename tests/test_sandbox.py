"""User SQL can only read the store, and any DuckDB client reads the store from anywhere."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from click.testing import CliRunner

from quanta_db.cli.main import cli
from quanta_db.errors import QueryError
from quanta_db.store import extensions, lake, sandbox
from quanta_db.store.store import Store

ATTACKS = [
    "COPY (SELECT 1 AS a) TO '{victim}' (FORMAT parquet)",
    "COPY (SELECT 1 AS a) TO '{outside}'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM glob('/root/*')",
    "SELECT * FROM read_text('/etc/hostname')",
    "SELECT * FROM read_csv('{outside_csv}')",
    "ATTACH '{outside_db}' AS other",
    "INSTALL httpfs",
    "LOAD parquet",
    "SET enable_external_access = true",
    "SET allowed_directories = ['/']",
    "RESET lock_configuration",
    "SELECT 1; COPY (SELECT 1 AS a) TO '{victim}' (FORMAT parquet)",
    "SELECT 1; SELECT 2",
    "CREATE TABLE x AS SELECT 1",
    "EXPORT DATABASE '{outside_dir}'",
    "CALL pragma_version()",
    "CHECKPOINT",
]


@pytest.fixture
def attack_paths(corpus_store, tmp_path):
    victim = corpus_store.committed_paths("tokens")[0]
    outside_csv = tmp_path / "secret.csv"
    outside_csv.write_text("secret\n42\n")
    return {"victim": victim, "outside": tmp_path / "out.csv", "outside_csv": outside_csv,
            "outside_db": tmp_path / "other.duckdb", "outside_dir": tmp_path / "export"}


@pytest.mark.parametrize("attack", ATTACKS)
def test_user_sql_cannot_write_or_read_outside_the_store(corpus_store, attack_paths, store_snapshot, attack):
    before = store_snapshot(corpus_store)
    sql = attack.format(**attack_paths)
    with pytest.raises(QueryError):
        corpus_store.query_arrow(sql)
    with pytest.raises(Exception, match="only SELECT|one SQL statement|Permission|disabled"):
        pd.read_sql(sql, corpus_store.engine())
    result = CliRunner().invoke(cli, ["--store", str(corpus_store.root), "query", sql])
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1, result.output
    assert store_snapshot(corpus_store) == before
    assert not attack_paths["outside"].exists() and not attack_paths["outside_db"].exists()
    assert not attack_paths["outside_dir"].exists()


def test_reads_of_the_store_itself_still_work(corpus_store):
    path = corpus_store.committed_paths("tokens")[0].as_posix()
    direct = corpus_store.query_arrow(f"SELECT count(*) AS n FROM read_parquet('{path}')").column("n")[0].as_py()
    assert direct == len(pd.read_parquet(path)) > 0
    assert corpus_store.query_df("EXPLAIN SELECT * FROM tokens").shape[0] >= 1
    assert corpus_store.query_df("EXPLAIN ANALYZE SELECT count(*) FROM tokens").shape[0] >= 1
    # Only committed files open: not a folder listing, not a file the catalog does not list.
    with pytest.raises(QueryError, match="Permission"):
        corpus_store.query_df("SELECT * FROM glob(?)", [f"{corpus_store.root}/tables/tokens/**"])


def test_the_connection_wall_holds_without_the_statement_check(corpus_store):
    from quanta_db.store import catalog

    with catalog.connect(corpus_store.root, read_only=True, user_sql=True) as con:
        for sql in ("SELECT * FROM read_csv('/etc/passwd')", "SET enable_external_access = true"):
            with pytest.raises(duckdb.Error, match="disabled|Cannot change"):
                con.execute(sql)


def test_unsafe_is_the_owners_explicit_escape_hatch(corpus_store, attack_paths):
    sql = f"SELECT * FROM read_csv('{attack_paths['outside_csv']}')"
    assert corpus_store.query_df(sql, unsafe=True)["secret"].tolist() == [42]
    result = CliRunner().invoke(cli, ["--store", str(corpus_store.root), "query", "--unsafe", "--format", "csv", sql])
    assert result.exit_code == 0 and "42" in result.output
    with pytest.raises(QueryError, match="read-only"):  # the catalog itself stays read-only
        corpus_store.query_arrow("CREATE TABLE x AS SELECT 1", unsafe=True)


def test_the_owners_unsafe_engine_is_the_same_escape_hatch(corpus_store, attack_paths):
    import pandas as pd

    sql = f"SELECT * FROM read_csv('{attack_paths['outside_csv']}')"
    assert pd.read_sql(sql, corpus_store.engine(unsafe=True))["secret"].tolist() == [42]
    with pytest.raises(pd.errors.DatabaseError, match="Permission Error"):
        pd.read_sql(sql, corpus_store.engine())


def _client_sql(root, query: str) -> str:
    """What a plain DuckDB client runs to read the store (`quanta-db export attach`), then ``query``."""
    return f"{Store.open(root).client_sql()}\n{query}"


def _plain_count(root) -> int:
    with duckdb.connect() as con:
        con.execute(_client_sql(root, "SELECT 1"))
        return con.execute("SELECT count(*) FROM tokens").fetchone()[0]


def test_plain_duckdb_reads_the_store_from_another_directory(corpus_store, tmp_path, monkeypatch):
    expected = corpus_store.query_arrow("SELECT count(*) AS n FROM tokens").column("n")[0].as_py()
    monkeypatch.chdir(tmp_path)
    assert _plain_count(corpus_store.root) == expected


def test_duckdb_command_line_client_reads_the_store(corpus_store, tmp_path):
    executable = shutil.which("duckdb")
    if executable is None:
        pytest.skip("the duckdb command-line client is not installed (pip install duckdb-cli)")
    expected = corpus_store.query_arrow("SELECT count(*) AS n FROM tokens").column("n")[0].as_py()
    sql = _client_sql(corpus_store.root, "SELECT count(*) AS n FROM tokens")
    out = subprocess.run([executable, "-csv", "-c", sql], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["n", str(expected)]


def test_a_moved_or_copied_store_reads_in_place(corpus_store, tmp_path, monkeypatch):
    """The lake records files relative to the store: nothing is rebuilt when it moves."""
    expected = corpus_store.query_arrow("SELECT count(*) AS n FROM tokens").column("n")[0].as_py()
    moved, copied = tmp_path / "moved", tmp_path / "copied"
    shutil.copytree(corpus_store.root, copied)
    shutil.move(corpus_store.root, moved)
    monkeypatch.chdir(tmp_path)
    for root in (moved, copied):
        assert _plain_count(root) == expected
        assert Store.open(root).query_arrow("SELECT count(*) AS n FROM tokens").column("n")[0].as_py() == expected


def test_parsing_reads_no_file(corpus_store, tmp_path):
    """IMPORT DATABASE is expanded at parse time by reading <dir>/schema.sql and load.sql (duckdb
    1.5 then put the first word of load.sql in its syntax error): the check parses where no file
    can be read, so nothing of a file outside the store reaches the error."""
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("schema.sql", "load.sql"):
        (outside / name).write_text("SECRET_d41d8cd9 is not SQL;\n")
    with pytest.raises(QueryError) as refused:
        corpus_store.query_df(f"IMPORT DATABASE '{outside}'")
    assert "SECRET" not in str(refused.value)


def test_statements_that_cannot_be_reads_are_refused_before_the_catalog_is_opened(corpus_store, monkeypatch):
    from quanta_db.store import catalog

    def no_catalog(*args, **kwargs):
        raise AssertionError("the catalog was opened")

    monkeypatch.setattr(catalog, "connect", no_catalog)
    monkeypatch.setattr(catalog, "change_stamp", no_catalog)
    for sql in ["COPY tokens TO 'x.csv'", "SELECT * FROM query('SELECT 1')", "SELECT * FROM checkpoint()",
                "WITH w AS (COPY (SELECT 1) TO 'x.csv') SELECT * FROM w", "EXPLAIN ANALYZE CHECKPOINT"]:
        with pytest.raises(QueryError):
            corpus_store.query_arrow(sql)
        result = CliRunner().invoke(cli, ["--store", str(corpus_store.root), "query", sql])
        assert result.exit_code != 0 and "opened" not in result.output and len(result.output.splitlines()) == 1
    with pytest.raises(AssertionError, match="opened"):  # a call of a saved analysis needs the catalog
        corpus_store.query_arrow("SELECT * FROM corpus_tokens('toy')")


def test_a_saved_analysis_cannot_take_the_name_of_a_duckdb_table_function(tmp_path):
    from quanta_db.store import views

    path = tmp_path / "query.sql"
    path.write_text("SELECT 1 AS x")
    with pytest.raises(QueryError, match="shadow DuckDB's table function"):
        views.parse_saved_query(path)


def test_an_extension_file_is_checked_once_and_again_once_it_changed(tmp_path, monkeypatch):
    import json

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(extensions, "_VERIFIED", {})  # as a new process
    assert extensions.connection_config(False)["allow_unsigned_extensions"] is False  # nothing checked yet
    with duckdb.connect(config=extensions.connection_config(False)) as con:
        extensions.load(con, False)  # DuckDB checks the signature
    record_file = tmp_path / "quanta-db" / extensions.RECORD_FILE
    entry = json.loads(record_file.read_text())[f"{duckdb.__version__}/ducklake"]
    installed = Path(entry["path"])
    status = installed.stat()
    assert entry["identity"] == [status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns]
    monkeypatch.setattr(extensions, "_VERIFIED", {})  # another process: the record is trusted
    config = extensions.connection_config(False)
    assert config["allow_unsigned_extensions"] is True
    with duckdb.connect(config=config) as con:
        extensions.load(con, False)
        assert con.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'ducklake'").fetchone()[0]
    entry["identity"][3] += 1  # the file as if edited since it was checked
    record_file.write_text(json.dumps({f"{duckdb.__version__}/ducklake": entry}))
    monkeypatch.setattr(extensions, "_VERIFIED", {})
    assert extensions.connection_config(False)["allow_unsigned_extensions"] is False


def test_a_query_node_that_does_not_read_is_refused_by_its_name():
    """DuckDB 1.5 serialises no such node (a CTE needs a SELECT); one a later DuckDB adds is named in
    the refusal rather than let through."""
    from quanta_db.store.sandbox import _write_in_tree

    tree = {"statements": [{"node": {"type": "SELECT_NODE", "from_table": {
        "type": "SUBQUERY", "subquery": {"node": {"type": "INSERT_QUERY_NODE"}}}}}]}
    assert _write_in_tree(tree, frozenset()) == "INSERT inside the query"


def test_a_store_folder_ending_in_any_character_is_the_readable_area(tmp_path):
    """The area confined SQL may read is the store's folder and what is under it, whatever its name ends with."""
    import pyarrow as pa

    store = Store.init(tmp_path / "storeX")
    with store.begin_run("test", {}) as run:
        run.write("vocab", pa.table({"tokenizer": ["t"], "token_id": [0], "token": ["a"]}))
        run.commit()
    (path,) = store.committed_paths("vocab")
    assert store.query_df(f"SELECT count(*) AS n FROM read_parquet('{path}')")["n"].tolist() == [1]
    assert [sandbox.store_folder(Path(p)) for p in ("/", "/a", "/a/", "/a b/c")] == ["/", "/a/", "/a/", "/a b/c/"]


READ = "only queries that read run against the store (this has {})"
# (statement, the saved analyses, the one line the check refuses it with or None, the SELECT it runs)
CHECKED = [
    ("", set(), "no SQL statement given", None), (";", set(), "no SQL statement given", None),
    ("-- only a comment", set(), "no SQL statement given", None),
    ("SELECT 1; SELECT 2", set(), "one SQL statement at a time, got 2", None),
    ("PIVOT documents ON corpus USING count(*)", set(), "one SQL statement at a time, got 2", None),
    ("SELEC 1", set(), 'Parser Error: syntax error at or near "SELEC"', None),
    ("SELECT 1", set(), None, "SELECT 1"), ("SELECT (SELECT 1)", set(), None, "SELECT (SELECT 1)"),
    ("EXPLAIN SELECT 1", set(), None, "SELECT 1"), ("EXPLAIN ANALYZE SELECT 1", set(), None, "SELECT 1"),
    ("EXPLAIN ANALYSE SELECT 3", set(), None, "SELECT 3"), ("explain analyze select 4", set(), None, "select 4"),
    ("SELECT * FROM token_losses t WHERE t.step = 1", set(), None, "SELECT * FROM token_losses t WHERE t.step = 1"),
    ("explain (format json, analyze) select 1", set(), None, "select 1"),
    ("EXPLAIN (FORMAT json) SELECT 2", set(), None, "SELECT 2"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO 'x.csv'", set(),
     "only a SELECT query can be explained here (this explains COPY)", None),
    ("EXPLAIN (FORMAT json, ANALYZE) INSERT INTO t VALUES (1)", set(),
     "only a SELECT query can be explained here (this explains INSERT)", None),
    ("INSERT INTO t VALUES (1)", set(), "only SELECT queries run against the store (this is INSERT)", None),
    ("UPDATE EXTENSIONS", set(),
     "only SELECT queries run against the store (this is a statement type unknown to this DuckDB client)", None),
    ("PRAGMA version", set(), READ.format("no SELECT tree"), None),
    ("SELECT * FROM __ducklake_metadata_lake.ducklake_data_file", set(),
     READ.format("a table of the catalog's metadata database"), None),
    ("SELECT * FROM lake.__DUCKLAKE_METADATA_lake.t", set(), READ.format("a table of the catalog's metadata database"), None),
    ("SELECT * FROM __ducklake_metadata_lake.main.ducklake_snapshot", set(),
     READ.format("a table of the catalog's metadata database"), None),
    ("SELECT * FROM checkpoint()", set(), READ.format("table function checkpoint()"), None),
    ("EXPLAIN SELECT * FROM checkpoint()", set(), READ.format("table function checkpoint()"), None),
    ("SELECT 1 UNION SELECT * FROM (SELECT * FROM Enable_Logging()) t", set(),
     READ.format("table function enable_logging()"), None),
    ("SELECT * FROM query('SELECT 1')", set(), READ.format("table function query()"), None),
    ("SELECT * FROM read_parquet('x') JOIN range(3) ON true", set(), None,
     "SELECT * FROM read_parquet('x') JOIN range(3) ON true"),
    ("SELECT * FROM glob('*'), read_csv_auto('x')", set(), None, "SELECT * FROM glob('*'), read_csv_auto('x')"),
    ("SELECT * FROM Token_Pane_Loss('c', 'm', 1)", {"token_pane_loss"}, None, "SELECT * FROM Token_Pane_Loss('c', 'm', 1)"),
    ("SELECT * FROM token_pane_loss('c', 'm', 1)", set(), READ.format("table function token_pane_loss()"), None),
    ("SELECT * FROM token_pane_loss('c', 'm', 1)", None, None, "SELECT * FROM token_pane_loss('c', 'm', 1)"),
    ("SELECT * FROM checkpoint()", None, READ.format("table function checkpoint()"), None),
]


@pytest.mark.parametrize(("sql", "macros", "refused", "planned"), CHECKED)
def test_the_statement_check_passes_reads_and_names_what_it_refuses(sql, macros, refused, planned):
    """The check alone, without a store: what it lets through (and the SELECT that then runs),
    and the one line it refuses anything else with. None for the macros: any table function
    that is not DuckDB's own may be a saved analysis (the check before a connection is open)."""
    check = sandbox.precheck if macros is None else lambda text: sandbox.check_read_only(text, frozenset(macros))
    if refused is None:
        check(sql)
        assert sandbox.planned_statement(sql) == planned
        return
    with pytest.raises(QueryError) as error:
        check(sql)
    hint = "" if refused.startswith(("no SQL", "one SQL", "Parser")) else f"; {sandbox.OWNER_HINT}"
    assert str(error.value) == refused + hint


def test_a_statement_checked_before_gets_the_same_answer_without_being_parsed_again(monkeypatch):
    parsed = []
    parse = sandbox._parse
    monkeypatch.setattr(sandbox, "_parse", lambda sql: parsed.append(sql) or parse(sql))
    monkeypatch.setattr(sandbox, "_CHECKED", {})
    monkeypatch.setattr(sandbox, "MAX_CHECKED", 3)
    passes, refused = "SELECT 41 + 1 AS answer", "SELECT * FROM token_pane_loss('c', 'm', 1)"
    for _ in range(2):
        sandbox.check_read_only(passes)
        with pytest.raises(QueryError, match=r"table function token_pane_loss\(\)"):
            sandbox.check_read_only(refused)
        sandbox.check_read_only(refused, frozenset({"token_pane_loss"}))  # a saved analysis of this store
    assert parsed == [passes, refused, refused]
    sandbox.check_read_only("SELECT 2")  # past MAX_CHECKED: the answers kept are forgotten, none is wrong
    assert len(sandbox._CHECKED) == 1
    with pytest.raises(QueryError, match="token_pane_loss"):
        sandbox.check_read_only(refused)
    assert parsed[-2:] == ["SELECT 2", refused]
    long_read = "SELECT 1 AS x" + " " * sandbox.MAX_CHECKED_CHARS  # longer statements are not kept
    for _ in range(2):
        sandbox.check_read_only(long_read)
    assert parsed[-2:] == [long_read, long_read] and (long_read, frozenset()) not in sandbox._CHECKED
    at_the_bound = "SELECT 3 AS x".ljust(sandbox.MAX_CHECKED_CHARS)  # the longest statement kept
    sandbox.check_read_only(at_the_bound)
    assert (at_the_bound, frozenset()) in sandbox._CHECKED


def test_a_duckdb_client_holding_the_store_open_holds_no_commit_back(corpus_store, monkeypatch):
    """`quanta-db export attach` gives any DuckDB client the readers' copy of a local catalog
    (DuckDB locks the catalog file itself for each commit: a client holding that open made every
    commit wait, then give up); a new attach shows each commit."""
    import numpy as np

    monkeypatch.setenv("QUANTA_DB_LOCK_TIMEOUT", "2")
    printed = CliRunner().invoke(cli, ["--store", str(corpus_store.root), "export", "attach"])
    assert printed.exit_code == 0 and printed.output.strip() == corpus_store.client_sql(), printed.output
    runs = "SELECT count(*) FROM runs WHERE status = 'committed'"
    with duckdb.connect() as held:
        held.execute(printed.output)
        before = held.execute(runs).fetchone()[0]
        with corpus_store.begin_run("test_held_client", {"n": 1}) as run:
            run.write_artifact("values", np.arange(3, dtype=np.float32))
            run.commit()  # raised CatalogLocked after the lock timeout with the catalog file held
        # a local client keeps the state it attached; on PostgreSQL each query reads the newest
        on_postgres = lake.locate(corpus_store.root).on_postgres
        assert held.execute(runs).fetchone()[0] == before + on_postgres
        with duckdb.connect() as fresh:
            fresh.execute(printed.output)
            assert fresh.execute(runs).fetchone()[0] == before + 1


def test_the_tree_walk_names_the_first_part_of_a_statement_that_is_not_a_read():
    """``sandbox._write_in_tree`` over trees written by hand in the shape DuckDB serialises."""
    walk, mine = sandbox._write_in_tree, frozenset({"my_analysis"})

    def table(catalog="", schema="main"):
        return {"type": "BASE_TABLE", "catalog_name": catalog, "schema_name": schema, "table_name": "t"}

    def function(name):
        return {"type": "TABLE_FUNCTION", "function": {"class": "FUNCTION", "function_name": name}}

    def select(*parts):
        return {"type": "SELECT_NODE", "from_table": {"type": "JOIN", "left": parts[0], "right": list(parts[1:])}}

    reads = [table(), table("lake"), function("Range"), function("read_parquet"), function("parquet_metadata"),
             function("my_analysis")]
    assert walk({"statements": [{"node": select(*reads)}], "error": False}, mine) is None
    assert walk([{"no_type": [select(table())]}, "text", 3, None], mine) is None
    union = {"type": "SET_OPERATION_NODE", "children": [select(table()), {"type": "CTE_NODE"}]}
    assert walk({"statements": [{"node": union}]}, mine) is None
    writes = [{"type": "DELETE_NODE"}, {"type": "UPDATE_QUERY_NODE"}]
    assert walk([select(table()), {"nested": [{"type": "INSERT_QUERY_NODE"}, *writes]}], mine) == "INSERT inside the query"
    assert walk({"statements": [{"node": select(table(), *writes)}]}, mine) == "DELETE inside the query"
    for metadata in (table("__ducklake_metadata_lake"), table("lake", "__DuckLake_Metadata_lake")):
        assert walk([select(table(), metadata)], mine) == "a table of the catalog's metadata database"
    assert walk([select(table(), function("Query"))], mine) == "table function query()"
    assert walk({"node": select(function("not_mine"))}, mine) == "table function not_mine()"  # not one of the store's
    assert walk([select({"type": "TABLE_FUNCTION"})], mine) == "table function none()"
    # with no list of the store's analyses, any table function but DuckDB's own may be one
    assert walk({"node": select(function("not_mine"))}, None) is None
    assert walk([select(function("not_mine"), function("query"))], None) == "table function query()"
