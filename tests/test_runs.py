import os
import signal
import subprocess
import sys
import textwrap
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quanta_db.errors import StoreError
from quanta_db.store import runs
from quanta_db.store.registry import fact_table, fact_tables
from quanta_db.store.sql import statement
from quanta_db.store.store import Store
from tests.helpers import staging_entries


def _vocab(name="tok", n=5):
    return pa.table({"tokenizer": [name] * n, "token_id": list(range(n)), "token": [f"t{i}" for i in range(n)]})


@pytest.mark.slow
def test_empty_fact_tables_are_typed_views(store):
    for name, spec in fact_tables().items():
        table = store.query_arrow(f'SELECT * FROM "{name}"')
        assert table.num_rows == 0
        assert table.schema.names == spec.schema.names
        assert [f.type for f in table.schema] == [f.type for f in spec.schema]


def test_commit_makes_rows_visible_with_declared_types(store):
    with store.begin_run("test", {"a": 1}) as run:
        run.write("vocab", pa.table({"tokenizer": ["tok"] * 3, "token_id": pa.array([0, 1, 2], pa.int64()),
                                     "token": ["a", "b", "c"], "extra": [1, 2, 3]}))
        assert store.query_df("SELECT count(*) AS n FROM vocab")["n"][0] == 0  # staged is invisible
        assert run.commit() == 3
    table = store.query_arrow("SELECT * FROM vocab ORDER BY token_id")
    assert table.column("token").to_pylist() == ["a", "b", "c"]
    assert table.schema.field("token_id").type == pa.int32()
    files = store.query_df("SELECT path, partition, rows FROM files")
    assert files["partition"].tolist() == ["tokenizer=tok"]
    assert files["path"][0].startswith("tables/vocab/tokenizer=tok/")
    assert store.query_df("SELECT status, rows_written FROM runs").values.tolist() == [["committed", 3]]
    assert staging_entries(store) == []


def test_batches_split_into_hive_partitions_with_encoded_names(store):
    data = pa.concat_tables([_vocab("org/model-a", 4), _vocab("b", 2)])
    with store.begin_run("test", {}) as run:
        run.write("vocab", data)
        run.commit()
    parts = store.query_df("SELECT partition, rows FROM files ORDER BY partition").values.tolist()
    assert parts == [["tokenizer=b", 2], ["tokenizer=org%2Fmodel-a", 4]]
    assert store.query_df("SELECT count(*) AS n FROM vocab WHERE tokenizer = 'org/model-a'")["n"][0] == 4


def test_abort_and_exception_leave_store_unchanged(store, store_snapshot):
    before = store_snapshot(store)
    with pytest.raises(RuntimeError):
        with store.begin_run("test", {}) as run:
            run.write("vocab", _vocab())
            raise RuntimeError("boom inside the write")
    assert store_snapshot(store) == before
    assert staging_entries(store) == []


def test_failure_inside_commit_transaction_rolls_back_and_moves_files_back(store, store_snapshot, monkeypatch):
    with store.begin_run("test", {"first": True}) as run:
        run.write("vocab", _vocab("kept"))
        run.commit()
    before = store_snapshot(store)

    from quanta_db.store import runs

    def broken(name):  # the last write of the transaction, after the files were registered in the lake
        if name == "add_committed_run":
            raise RuntimeError("recording the run failed")
        return statement(name)

    monkeypatch.setattr(runs, "statement", broken)
    with pytest.raises(RuntimeError):
        with store.begin_run("test", {"second": True}) as run:
            run.write("vocab", _vocab("lost"))
            run.commit()
    assert store_snapshot(store) == before


def test_store_can_be_moved(tmp_path, store):
    with store.begin_run("test", {}) as run:
        run.write("vocab", _vocab())
        run.commit()
    moved = tmp_path / "elsewhere" / "copy"
    moved.parent.mkdir()
    os.rename(store.root, moved)
    assert Store.open(moved).query_df("SELECT count(*) AS n FROM vocab")["n"][0] == 5


def test_replace_drops_the_partition(store):
    for n in (5, 3):
        with store.begin_run("test", {"n": n}) as run:
            run.replace("vocab", tokenizer="tok")
            run.write("vocab", _vocab(n=n))
            run.commit()
    assert store.query_df("SELECT count(*) AS n FROM vocab")["n"][0] == 3
    assert sorted(store.query_df("SELECT status FROM runs")["status"]) == ["committed", "superseded"]
    assert len(list((store.root / "tables/vocab").rglob("*.parquet"))) == 1


CHILD = textwrap.dedent("""
    import sys, time
    import pyarrow as pa
    from quanta_db.store import runs
    from quanta_db.store.store import Store
    store = Store.open(sys.argv[1])
    original = runs.move_file
    def slow_move(src, dest):
        original(src, dest)
        print("moved", flush=True)
        time.sleep(120)
    runs.move_file = slow_move
    run = store.begin_run("test", {"child": True})
    run.write("vocab", pa.table({"tokenizer": ["child"] * 3, "token_id": [0, 1, 2], "token": list("abc")}))
    run.commit()
""")


@pytest.mark.slow
def test_killed_mid_commit_reads_as_before_and_gc_cleans(store, store_snapshot):
    with store.begin_run("test", {}) as run:
        run.write("vocab", _vocab())
        run.commit()
    before = store_snapshot(store)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(store.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "moved"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    after = store_snapshot(store)
    assert {k: v for k, v in after.items() if k != "files"} == {k: v for k, v in before.items() if k != "files"}
    assert len(after["files"]) == len(before["files"]) + 1  # the moved, never-recorded file
    assert len(staging_entries(store)) == 1
    report = store.gc()
    assert len(report.staging_removed) == 1 and len(report.orphans_removed) == 1
    assert store_snapshot(store) == before
    assert staging_entries(store) == []


HOLDER = textwrap.dedent("""
    import sys, time
    from quanta_db.store.catalog import connect
    with connect(sys.argv[1], read_only=False):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def _hold_lock(store, seconds, holder=HOLDER, held=None):
    """A child process running ``holder`` on ``held`` (default: the store) for ``seconds``,
    once it says it holds it."""
    child = subprocess.Popen([sys.executable, "-c", holder, str(held or store.root), str(seconds)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "locked"
    return child


@pytest.mark.slow
def test_locked_catalog_fails_after_bounded_wait(store, monkeypatch):
    monkeypatch.setenv("QUANTA_DB_LOCK_TIMEOUT", "0.5")
    child = _hold_lock(store, 5)
    try:
        started = time.monotonic()
        with pytest.raises(StoreError, match="locked by another process"):
            store.gc()  # a writer: on PostgreSQL readers never wait
        assert time.monotonic() - started < 4
    finally:
        child.kill()
        child.wait()


FOREIGN_HOLDER = textwrap.dedent("""
    import sys, time
    import duckdb
    with duckdb.connect(sys.argv[1]):  # a researcher's DuckDB shell left open on the catalog file
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


@pytest.mark.slow
def test_a_commit_waits_for_another_duckdb_holding_the_catalog_file_then_names_it(store, monkeypatch):
    """Not a quanta-db process (no write lock of ours held): DuckDB's own file lock refuses the
    writer's attach, which is retried until the lock timeout and then named, the store as before."""
    from quanta_db.store.catalog import CatalogLocked

    if store.catalog().startswith("postgresql"):
        pytest.skip("a local catalog file only")
    monkeypatch.setenv("QUANTA_DB_LOCK_TIMEOUT", "0.5")
    catalog_file = store.root / "catalog.ducklake"
    child = _hold_lock(store, 5, FOREIGN_HOLDER, catalog_file)
    try:
        run = store.begin_run("test", {"n": 1})
        run.write("vocab", _vocab())
        started = time.monotonic()
        with pytest.raises(CatalogLocked, match=f"^catalog {catalog_file} is locked by another process"):
            run.commit()
        assert 0.5 <= time.monotonic() - started < 4
    finally:
        child.kill()
        child.wait()
    assert store.query_df("SELECT count(*) AS n FROM runs WHERE status = 'committed'")["n"].tolist() == [0]


@pytest.mark.slow
def test_a_commit_locked_out_names_the_runs_it_keeps_staged(store, monkeypatch):
    """One run, and the runs of one split committed together (``commit_runs``), each named."""
    from quanta_db.store.catalog import CatalogLocked
    from quanta_db.store.runs import commit_runs

    monkeypatch.setenv("QUANTA_DB_LOCK_TIMEOUT", "0.5")
    child = _hold_lock(store, 5)
    try:
        run, *split = (store.begin_run("test", {"n": n}) for n in range(3))
        for staged in (run, *split):
            staged.write("vocab", _vocab())
        with pytest.raises(CatalogLocked) as locked:
            run.commit()
        with pytest.raises(CatalogLocked) as split_locked:
            commit_runs(split, retry_hint="the split's next job commits them")
    finally:
        child.kill()
        child.wait()
    assert str(locked.value).endswith(
        f"; run {run.run_id} is kept staged, and running the same command again commits it"), str(locked.value)
    assert str(split_locked.value).endswith(
        f"; run {split[0].run_id}, {split[1].run_id} is kept staged, and the split's next job commits them")
    assert all((store.root / "staging" / staged.run_id).is_dir() for staged in (run, *split))


def test_a_run_whose_staging_was_removed_says_so_in_one_line(store):
    import shutil

    run = store.begin_run("test", {})
    run.write("vocab", _vocab())
    shutil.rmtree(run.staging)
    with pytest.raises(StoreError) as removed:
        run.commit()
    assert str(removed.value) == (f"the staged files of run {run.run_id} were removed while the job ran (by "
                                  "`quanta-db gc` on a host that judged it dead?); nothing was committed, "
                                  "re-run the command")
    run.abort()  # its staging is gone already: forgetting it is no error
    assert run._state == "aborted" and not run.staging.exists()


@pytest.mark.slow
def test_locked_catalog_is_retried_until_free(store, monkeypatch):
    monkeypatch.setenv("QUANTA_DB_LOCK_TIMEOUT", "30")
    child = _hold_lock(store, 1.5)
    try:
        with store.begin_run("test", {}) as run:
            run.write("vocab", _vocab())
            run.commit()
    finally:
        child.wait()
    assert store.query_df("SELECT count(*) AS n FROM vocab")["n"][0] == 5


@pytest.mark.slow
def test_readers_do_not_wait_for_a_writer_and_see_the_state_it_started_from(store, monkeypatch):
    from quanta_db.store.catalog import connect

    with store.begin_run("test", {}) as run:
        run.write("vocab", _vocab())
        run.commit()
    monkeypatch.setenv("QUANTA_DB_LOCK_TIMEOUT", "0.5")  # a reader that waited out the writer would fail
    child = _hold_lock(store, 5)
    try:
        assert store.query_df("SELECT count(*) AS n FROM vocab")["n"][0] == 5
        with connect(store.root, read_only=True) as con:
            assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 1
    finally:
        child.kill()
        child.wait()


DIES_AFTER_COMMITTING = textwrap.dedent("""
    import os, sys
    from quanta_db.store.catalog import connect
    with connect(sys.argv[1], read_only=False) as con:
        con.execute("INSERT INTO saved_queries (name, sql, sha256) VALUES ('late', 'SELECT 1', 'x')")
        os._exit(9)  # killed after its commit, before publishing a copy for readers
""")


def test_a_commit_whose_writer_died_before_publishing_is_read_and_published_by_the_next(store):
    from quanta_db.store import published
    from quanta_db.store.catalog import connect

    late = "SELECT count(*) AS n FROM saved_queries WHERE name = 'late'"
    assert store.query_df(late)["n"][0] == 0
    child = subprocess.run([sys.executable, "-c", DIES_AFTER_COMMITTING, str(store.root)])
    assert child.returncode == 9
    assert store.query_df(late)["n"][0] == 1
    with connect(store.root, read_only=True) as con:
        assert con.execute(late).fetchone()[0] == 1
    if store.root.joinpath(published.READERS_FILE).exists():  # a local catalog: the next writer publishes
        assert store.root.joinpath(published.WRITING_FILE).exists()
        store.gc()
        assert not store.root.joinpath(published.WRITING_FILE).exists()
        with connect(store.root, read_only=True) as con:
            assert con.execute("SELECT count(*) FROM duckdb_databases() WHERE path LIKE '%readers%'").fetchone()[0] == 1
            assert con.execute(late).fetchone()[0] == 1


DIES_BEFORE_PUBLISHING = textwrap.dedent("""
    import os, sys
    from quanta_db.store import published
    from quanta_db.store.catalog import connect
    published.publish = lambda metadata_file: os._exit(9)  # killed after closing the catalog, before publishing
    with connect(sys.argv[1], read_only=False) as con:
        con.execute("INSERT INTO saved_queries (name, sql, sha256) VALUES ('late', 'SELECT 1', 'x')")
""")


def test_a_commit_whose_writer_died_after_closing_the_catalog_is_read_from_the_catalog(store, catalog_backend):
    """The catalog closed (no write-ahead log left) but the readers' copy not yet published: a
    query copies the catalog file alone."""
    from quanta_db.store import lake, published

    if catalog_backend != "duckdb":
        pytest.skip("a local catalog's readers' copy only")
    late = "SELECT count(*) AS n FROM saved_queries WHERE name = 'late'"
    assert store.query_df(late)["n"][0] == 0
    child = subprocess.run([sys.executable, "-c", DIES_BEFORE_PUBLISHING, str(store.root)])
    assert child.returncode == 9
    assert store.root.joinpath(published.WRITING_FILE).exists()
    assert not store.root.joinpath(lake.LOCAL_FILE + ".wal").exists()
    assert store.query_df(late)["n"][0] == 1


def test_params_hash_is_order_independent():
    assert runs.params_hash("k", {"a": 1, "b": 2}) == runs.params_hash("k", {"b": 2, "a": 1})
    assert runs.params_hash("k", {"a": 1}) != runs.params_hash("j", {"a": 1})


OTHER_PROCESS = textwrap.dedent("""
    import sys
    import pyarrow as pa
    from quanta_db.store.store import Store
    store = Store.open(sys.argv[1])
    with store.begin_run("test", {"other": 1}) as run:
        run.write("vocab", pa.table({"tokenizer": ["other"], "token_id": [7], "token": ["z"]}))
        run.commit()
    with store.write() as con:
        con.execute("CREATE TABLE made_elsewhere (a INTEGER)")
""")


def test_a_connection_kept_between_commits_sees_what_other_processes_committed(store):
    """On PostgreSQL a process keeps its writing connection and lock session between commits
    (store/kept.py): its next commit still sees every commit another process made meanwhile."""
    from quanta_db.store import catalog, kept

    with store.begin_run("test", {"a": 1}) as run:
        run.write("vocab", _vocab())
        run.commit()
    subprocess.run([sys.executable, "-c", OTHER_PROCESS, str(store.root)], check=True)
    with store.write() as con:  # the table the other process made, and its files
        con.execute("INSERT INTO made_elsewhere VALUES (1)")
        assert sorted(con.execute("SELECT partition FROM files").fetchall()) == [("tokenizer=other",), ("tokenizer=tok",)]
    with store.begin_run("test", {"a": 2}) as run:  # a second file of this process's partition
        run.write("vocab", _vocab(n=2))
        assert run.commit() == 2
    assert store.query_df("SELECT tokenizer, count(*) AS n FROM vocab GROUP BY ALL ORDER BY ALL").values.tolist() == [
        ["other", 1], ["tok", 7]]
    locator = catalog.locate(store.root)
    if locator.on_postgres:
        assert catalog._writers.take(kept.key(locator)) is not None  # kept after the last commit


def test_connections_kept_for_commits_are_replaced_when_the_server_ended_them(store):
    import duckdb
    import psycopg

    from quanta_db.store import catalog, kept

    locator = catalog.locate(store.root)
    if not locator.on_postgres:
        pytest.skip("a catalog on PostgreSQL only")
    with store.write():
        pass
    session = catalog._lock_sessions.take(kept.key(locator))
    with psycopg.connect(os.environ["QUANTA_DB_TEST_POSTGRES"], autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [session.info.backend_pid])
    catalog._lock_sessions.give(kept.key(locator), session)
    dead = duckdb.connect()
    dead.close()
    catalog._writers.take(kept.key(locator)).close()
    catalog._writers.give(kept.key(locator), dead)
    with store.begin_run("test", {"a": 2}) as run:
        run.write("vocab", _vocab())
        assert run.commit() == 5
    assert catalog._lock_sessions.take(kept.key(locator)) is not session
    assert catalog._writers.take(kept.key(locator)) is not dead


def test_a_replaced_readers_copy_is_freed_after_the_commit_and_a_dead_writers_name_by_the_next(store):
    """Publishing keeps a second name for the readers' copy it replaces (so replacing it frees
    nothing in the commit's time) and removes it in a thread; a name left by a process that died
    first is removed by the next commit."""
    import threading

    from quanta_db.store import published
    from quanta_db.store.catalog import connect

    if not store.root.joinpath(published.READERS_FILE).exists():
        pytest.skip("a catalog on PostgreSQL publishes no readers' copy")
    left = store.root / f"{published.READERS_FILE}.999999999.1{published.REPLACED_SUFFIX}"  # no such process
    os.link(store.root / published.READERS_FILE, left)
    replaced = []
    real_link = os.link
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "link", lambda source, target: (replaced.append(target), real_link(source, target))[1])
        with connect(store.root, read_only=False) as con:
            con.execute("INSERT INTO saved_queries (name, sql, sha256) VALUES ('freed', 'SELECT 1', 'x')")
    assert not left.exists()
    (kept,) = replaced
    for thread in threading.enumerate():
        if thread.name == "quanta-db-replaced-copy":
            thread.join()
    assert not kept.exists()
    assert sorted(p.name for p in store.root.glob(f"{published.READERS_FILE}*")) == [published.READERS_FILE]
    assert store.query_df("SELECT count(*) AS n FROM saved_queries WHERE name = 'freed'")["n"][0] == 1


def test_a_writer_starts_small_row_groups_in_a_local_catalogs_metadata(store):
    """A commit's checkpoint rewrites the row group it appended to: a writer starts row groups of
    lake.METADATA_ROW_GROUP_ROWS rows in a local catalog's metadata file, not DuckDB's 122,880."""
    import duckdb

    from quanta_db.store import catalog, lake
    from quanta_db.store.catalog import connect

    if catalog.locate(store.root).on_postgres:
        pytest.skip("PostgreSQL keeps the metadata of a catalog on it")
    with connect(store.root, read_only=False) as con:
        con.execute("CREATE TABLE scratch AS SELECT range AS n FROM range(5000)")  # inlined in the metadata file
    with duckdb.connect(str(store.root / lake.LOCAL_FILE), read_only=True) as metadata:
        (holder,) = metadata.execute(
            "SELECT i.table_name FROM ducklake_inlined_data_tables AS i JOIN ducklake_table AS t USING (table_id) "
            "WHERE t.table_name = 'scratch'").fetchone()
        groups = metadata.execute(f"SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('{holder}')").fetchone()[0]
    assert groups == -(-5000 // lake.METADATA_ROW_GROUP_ROWS)


def test_a_local_writer_is_attached_on_a_connection_made_after_the_last_commit(store):
    """A process's next local commit attaches the catalog on a connection a thread made after its
    last one (a new DuckDB database is 12-18 ms of a commit)."""
    import threading

    from quanta_db.store import catalog

    if catalog.locate(store.root).on_postgres:
        pytest.skip("a writer on PostgreSQL is kept whole between commits")
    with catalog.connect(store.root, read_only=False):
        pass
    for thread in threading.enumerate():
        if thread.name == "quanta-db-next-writer":
            thread.join()
    blank = catalog._next_writers.take(catalog.LOCAL_WRITERS)
    assert blank is not None and blank.execute("SELECT count(*) FROM duckdb_databases() WHERE NOT internal").fetchone()[0] == 1
    catalog._next_writers.give(catalog.LOCAL_WRITERS, blank)
    with catalog.connect(store.root, read_only=False) as con:
        assert con is blank
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] >= 0


def test_one_write_of_several_partitions_makes_a_file_per_key_group(store):
    """Rows of two models at two steps in one write: four files, each holding only its own rows,
    each recorded with its keys."""
    rows = [{"model": model, "step": step, "layer": 0, "head": head, "induction": float(head)}
            for model in ("m-a", "m-b") for step in (0, 1000) for head in range(3)]
    schema = fact_table("head_scores").schema
    with store.begin_run("heads", {"groups": 4}) as run:
        run.write("head_scores", pa.Table.from_pylist(rows, schema=schema))
        assert run.commit() == 12
    listed = store.manifest("head_scores").to_pylist()
    assert sorted((f["model"], f["step"], f["rows"]) for f in listed) == [
        ("m-a", 0, 3), ("m-a", 1000, 3), ("m-b", 0, 3), ("m-b", 1000, 3)]
    for f in listed:
        held = pq.read_table(f["path"], columns=["model", "step"]).to_pylist()
        assert held == [{"model": f["model"], "step": f["step"]}] * 3


def test_an_unknown_fact_table_is_named_with_the_known_ones():
    from quanta_db.errors import QuantaError

    with pytest.raises(QuantaError) as error:
        fact_table("nope")
    assert str(error.value) == f"unknown fact table 'nope' (known: {', '.join(sorted(fact_tables()))})"


def test_a_record_batch_is_staged_and_files_keep_row_groups_of_at_most_row_group_rows(store, monkeypatch):
    """A run takes a RecordBatch as a table; a file's row groups (what DuckDB reads in parallel and
    prunes by statistics) hold at most ``ROW_GROUP_ROWS`` rows however much one flush writes."""
    monkeypatch.setattr(runs, "ROW_GROUP_ROWS", 4)
    with store.begin_run("test", {}) as run:
        assert run.write("vocab", _vocab("t", 10).to_batches()[0]) == 10
        run.commit()
    (listed,) = store.manifest("vocab").to_pylist()
    metadata = pq.ParquetFile(listed["path"]).metadata
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [4, 4, 2]
    assert store.query_df("SELECT token FROM vocab ORDER BY token_id")["token"].tolist() == [f"t{i}" for i in range(10)]


def test_params_that_json_cannot_hold_are_recorded_as_text(store):
    """A job's parameters may hold paths or dates (a corpus's source folder): the run records them
    as their text rather than failing the commit."""
    import datetime as dt
    import json
    from pathlib import Path

    params = {"source": Path("/data/corpus"), "since": dt.date(2026, 12, 2), "k": 3}
    with store.begin_run("test", params) as run:
        run.write("vocab", _vocab())
        run.commit()
    (recorded,) = store.query_df("SELECT params FROM runs")["params"]
    recorded = json.loads(recorded)
    recorded.pop("environment")  # the versions a run records beside its parameters
    assert recorded == {"k": 3, "since": "2026-12-02", "source": "/data/corpus"}


def test_corpora_split_within_one_partition_get_a_file_each(store):
    """Two corpora of one model and step share a partition folder: each gets its own file (the
    split key in its name), none overwrites the other, and each holds only its own rows."""
    schema = fact_table("head_token_metrics").schema
    rows = [{"model": "m", "step": 0, "corpus": corpus, "doc_id": doc, "pos": 1, "layer": 0, "head": 0, "dla": 0.5,
             "mover_attn": 0.0, "mover_dla": 0.0} for corpus, n in (("c-0", 2), ("c-1", 3)) for doc in range(n)]
    with store.begin_run("heads", {}) as run:
        run.write("head_token_metrics", pa.Table.from_pylist(rows, schema=schema))
        assert run.commit() == 5
    listed = store.manifest("head_token_metrics").to_pylist()
    assert sorted((f["corpus"], f["rows"]) for f in listed) == [("c-0", 2), ("c-1", 3)]
    assert len({f["path"] for f in listed}) == 2
    for f in listed:
        assert set(pq.read_table(f["path"], columns=["corpus"]).column("corpus").to_pylist()) == {f["corpus"]}
    assert store.query_df("SELECT count(*) AS n FROM head_token_metrics")["n"][0] == 5


def test_run_identities_and_partition_folders_are_as_documented(monkeypatch):
    """A run's id, its parameters' hash (pinned: "already ingested" across releases depends on it)
    and the Hive folder of a partition."""
    import datetime as dt
    import hashlib
    import json
    import re
    from pathlib import Path

    from quanta_db.store.runs import new_run_id, params_hash, partition_dir

    params = {"b": 1, "a": [1, 2], "p": Path("/x")}
    assert params_hash("losses", params) == "5ff6366b7528de2da475b129c1445a4a3690d3a6d149e6c88c69c12124f5fd5c"
    assert params_hash("losses", dict(reversed(params.items()))) == params_hash("losses", params)
    assert params_hash("losses", {}) == hashlib.sha256(json.dumps({"kind": "losses", "params": {}}).encode()).hexdigest()
    assert params_hash("sae", params) != params_hash("losses", params)
    monkeypatch.setenv("TZ", "JST-9")  # a run id's time is UTC whatever the host's zone
    time.tzset()
    try:
        before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        first, second = new_run_id(), new_run_id()
        after = dt.datetime.now(dt.timezone.utc)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert re.fullmatch(r"r\d{14}-[0-9a-f]{8}", first) and first != second
    stamp = dt.datetime.strptime(first[1:15], "%Y%m%d%H%M%S").replace(tzinfo=dt.timezone.utc)
    assert before <= stamp <= after
    assert partition_dir({"model": "org/m", "step": 5, "corpus": "a b%"}) == "model=org%2Fm/step=5/corpus=a%20b%25"
    assert partition_dir({}) == ""


def test_a_batch_is_split_by_its_partition_keys_whatever_their_order():
    from quanta_db.store.runs import _split_by_keys

    data = pa.table({"m": ["a", "b", "a", "b", "a"], "s": [1, 1, 2, 1, 1], "v": [0, 1, 2, 3, 4]})
    groups = {tuple(keys.values()): rows.column("v").to_pylist() for keys, rows in _split_by_keys(data, ("m", "s"))}
    assert groups == {("a", 1): [0, 4], ("b", 1): [1, 3], ("a", 2): [2]}
    assert [(keys, rows.num_rows) for keys, rows in _split_by_keys(data.slice(1, 1), ("m", "s"))] == [({"m": "b", "s": 1}, 1)]
    assert [(keys, rows.num_rows) for keys, rows in _split_by_keys(data, ())] == [({}, 5)]
    ones = _split_by_keys(data.filter(pa.array([True, False, True, False, False])), ("m",))
    assert [(keys, rows.column("v").to_pylist()) for keys, rows in ones] == [({"m": "a"}, [0, 2])]
