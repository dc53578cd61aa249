"""The store's small pieces, each against what it reports checked independently: ``status``
against the Parquet files themselves, ``relation_exists`` against DuckDB's own catalog, and the
heartbeat that keeps a live job's staging folder from being collected."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quanta_db.store import liveness
from quanta_db.store.registry import catalog_tables, fact_table, fact_tables
from tests.helpers import snapshot_count


@pytest.mark.slow
def test_status_counts_what_is_on_disk(corpus_store):
    store = corpus_store
    status = store.status(last_runs=1)
    facts = {row["table"]: row for row in status["fact_tables"]}
    assert set(facts) == {*fact_tables(), "artifact"}
    for table in ("documents", "tokens"):
        paths = store.committed_paths(table)
        assert facts[table]["files"] == len(paths) > 0
        assert facts[table]["rows"] == sum(pq.ParquetFile(p).metadata.num_rows for p in paths) > 0
        assert facts[table]["bytes"] == sum(p.stat().st_size for p in paths)
    assert facts["token_losses"] == {"table": "token_losses", "rows": 0, "files": 0, "bytes": 0}
    assert set(status["catalog_tables"]) == set(catalog_tables())
    for table, rows in status["catalog_tables"].items():
        assert rows == int(store.query_df(f'SELECT count(*) AS n FROM "{table}"')["n"][0])
    assert status["schema_version"] == int(store.query_df("SELECT max(version) AS v FROM schema_migrations")["v"][0])
    assert status["root"] == str(store.root)
    newest = store.query_df("SELECT run_id FROM runs ORDER BY ended_at DESC LIMIT 1")["run_id"][0]
    assert list(status["last_runs"].run_id) == [newest]
    assert len(store.status(last_runs=10)["last_runs"]) == int(store.query_df("SELECT count(*) AS n FROM runs")["n"][0])


def test_relation_exists_for_views_and_tables_only(corpus_store):
    assert corpus_store.relation_exists("tokens")  # a view
    assert corpus_store.relation_exists("runs")  # a table
    assert not corpus_store.relation_exists("no_such_relation")
    assert not corpus_store.relation_exists("duckdb_tables")  # DuckDB's own (internal) views are not the store's


@pytest.fixture
def fast_heartbeat(monkeypatch):
    monkeypatch.setenv(liveness.HEARTBEAT_ENV, "0.05")
    monkeypatch.setattr(liveness, "_thread", None)  # a fresh beating thread that reads the fast interval
    monkeypatch.setattr(liveness, "_registered", set())


def test_the_heartbeat_refreshes_a_registered_marker_and_lets_a_removed_one_go(tmp_path, fast_heartbeat):
    live, gone = tmp_path / "live", tmp_path / "gone"
    liveness.write_marker(live, run_id="a")
    liveness.write_marker(gone, run_id="b")
    assert liveness.read_marker(live) == {"run_id": "a", "pid": os.getpid(), "host": socket.gethostname()}
    old = time.time() - 3600
    os.utime(live / liveness.MARKER, (old, old))
    (gone / liveness.MARKER).unlink()
    gone.rmdir()
    deadline = time.monotonic() + 5
    while (liveness.heartbeat_age_s(live) > 60 or gone in liveness._registered) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert liveness.heartbeat_age_s(live) < 60
    assert gone not in liveness._registered and live in liveness._registered
    assert liveness.heartbeat_age_s(gone) == float("inf")
    liveness.let_go(live)
    assert live not in liveness._registered


def test_one_heartbeat_thread_beats_for_every_folder_and_a_dead_one_is_replaced(tmp_path, fast_heartbeat):
    """A process running many jobs keeps one beating thread, not one per staging folder; a thread
    that stopped (an exception in a beat) is started again by the next folder registered."""
    liveness.write_marker(tmp_path / "first", run_id="a")
    beating = liveness._thread
    liveness.write_marker(tmp_path / "second", run_id="b")
    assert liveness._thread is beating and beating.is_alive()
    stopped = threading.Thread(target=lambda: None)
    stopped.start()
    stopped.join()
    liveness._thread = stopped
    liveness.keep_alive(tmp_path / "third")
    assert liveness._thread is not stopped and liveness._thread.is_alive()
    for name in ("first", "second", "third"):
        liveness.let_go(tmp_path / name)


def test_owner_alive_by_process_and_by_heartbeat(tmp_path, fast_heartbeat, monkeypatch):
    mine = tmp_path / "mine"
    liveness.write_marker(mine)
    assert liveness.owner_alive(mine)
    liveness.let_go(mine)
    assert not liveness.owner_alive(mine)  # this process, no longer keeping it
    assert not liveness.owner_alive(tmp_path / "no_marker")
    dead = tmp_path / "dead"
    dead.mkdir()
    child = os.fork() if hasattr(os, "fork") else None
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)  # a pid of this host that no longer runs
    (dead / liveness.MARKER).write_text(f'{{"pid": {child}, "host": "{socket.gethostname()}"}}')
    assert not liveness.owner_alive(dead)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / liveness.MARKER).write_text('{"pid": 1, "host": "another-host"}')
    monkeypatch.setenv(liveness.STALE_AFTER_ENV, "100")
    assert liveness.owner_alive(elsewhere)  # fresh heartbeat on another host: alive
    old = time.time() - 101
    os.utime(elsewhere / liveness.MARKER, (old, old))
    assert not liveness.owner_alive(elsewhere)  # stale: dead, whatever host
    (elsewhere / liveness.MARKER).write_text("not json")
    assert liveness.read_marker(elsewhere) is None and not liveness.owner_alive(elsewhere)
    unnamed = tmp_path / "unnamed"  # a marker of this host that names no process: its heartbeat decides
    unnamed.mkdir()
    (unnamed / liveness.MARKER).write_text(f'{{"host": "{socket.gethostname()}"}}')
    assert liveness.owner_alive(unnamed)
    os.utime(unnamed / liveness.MARKER, (old, old))
    assert not liveness.owner_alive(unnamed)


def test_only_a_pid_that_names_a_running_process_exists():
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    assert liveness.process_exists(os.getpid()) and liveness.process_exists(1)  # init, whoever runs this
    assert not liveness.process_exists(child)  # ended
    assert not any(liveness.process_exists(pid) for pid in (0, -1, -os.getpid(), 2**40))  # groups, out of range


def test_another_users_running_job_is_alive():
    """A store shared by several users: a job of another user on this host refuses the pid check
    (EPERM), and its heartbeat decides, as for a job on another host."""
    assert liveness.process_exists(os.getppid())
    if os.geteuid() != 0:
        if os.stat("/proc/1").st_uid == os.geteuid():
            pytest.skip("needs a process of another user")
        assert liveness.process_exists(1)
        return
    child = os.fork()
    if child == 0:  # root: judge this process's job from a process of another user (nobody)
        code = 2
        try:
            os.setuid(65534)
            folder = Path(tempfile.mkdtemp())
            (folder / liveness.MARKER).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
            code = 0 if liveness.process_exists(os.getppid()) and liveness.owner_alive(folder) else 1
            shutil.rmtree(folder)
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0


@pytest.mark.parametrize("job", ["corpus", "losses"])
def test_a_run_whose_commit_times_out_is_kept_and_the_same_command_commits_it(job, corpus_store, toy_inputs,
                                                                              toy_model, monkeypatch):
    """The lock timeout as the commit sees it, in this process (the concurrency tests show the same
    with a real writer in another process): the run is kept staged through the job's clean-up, and
    running the command again commits it without computing it again."""
    from click.testing import CliRunner

    from quanta_db.cli.main import cli
    from quanta_db.store import catalog

    store = corpus_store
    real_connect = catalog.connect

    def locked_for_writers(root, *, read_only, user_sql=False):
        if not read_only:
            raise catalog.CatalogLocked(f"catalog {root} is locked by another process")
        return real_connect(root, read_only=read_only, user_sql=user_sql)

    command = ["--store", str(store.root), "ingest", *{
        "corpus": ["corpus", str(toy_inputs["corpus"]), "--name", "toy2", "--tokenizer", str(toy_inputs["tokenizer"]),
                   "--max-tokens", "48"],
        "losses": ["losses", "--model", str(toy_model["dir"]), "--name", "tiny", "--corpus", "toy", "--steps", "8"],
    }[job], "--no-progress"]
    runs_before = store.query_df("SELECT run_id FROM runs").run_id.tolist()
    monkeypatch.setattr(catalog, "connect", locked_for_writers)
    refused = CliRunner().invoke(cli, command)
    monkeypatch.setattr(catalog, "connect", real_connect)
    assert refused.exit_code == 1 and "is kept staged" in refused.output, refused.output
    (kept,) = [p.name for p in (store.root / "staging").iterdir()]
    assert liveness.read_marker(store.root / "staging" / kept)["ready"]
    assert store.query_df("SELECT run_id FROM runs").run_id.tolist() == runs_before
    rerun = CliRunner().invoke(cli, command)
    assert rerun.exit_code == 0 and "already ingested" in rerun.output, rerun.output
    assert store.query_df("SELECT status FROM runs WHERE run_id = ?", [kept]).status.tolist() == ["committed"]
    assert not (store.root / "staging" / kept).exists()


def test_a_kept_run_is_committed_by_its_job_whatever_staging_holds_beside_it(store):
    """The job's next observation commits its kept run past folders that are not such a run: one a
    crash left without a marker (sorted first here), a kept run of other parameters."""
    import pyarrow as pa

    (store.root / "staging" / "0-left-by-a-crash").mkdir(parents=True)
    staged = {}
    for n in (2, 1):
        run = store.begin_run("test_kept", {"n": n})
        run.write("vocab", pa.table({"tokenizer": [f"tok{n}"], "token_id": [0], "token": ["t0"]}))
        run._keep_ready()
        staged[n] = run.run_id
    store.observe("test_kept", {"n": 1})
    statuses = dict(store.query_df("SELECT run_id, status FROM runs WHERE kind = 'test_kept'").itertuples(index=False))
    assert statuses == {staged[1]: "committed"}
    assert (store.root / "staging" / staged[2]).is_dir()


def test_a_table_declared_by_two_kinds_is_refused_naming_both():
    from types import SimpleNamespace

    from quanta_db.errors import QuantaError
    from quanta_db.store.registry import _register

    facts, catalog, owner = {}, {}, {}
    spec = SimpleNamespace(name="shared")
    _register(facts, owner, spec, "first", catalog)
    assert facts == {"shared": spec} and owner == {"shared": "first"}
    for into, other in ((facts, catalog), (catalog, facts)):  # again as a fact table, or as a catalog table
        with pytest.raises(QuantaError, match="table 'shared' is declared by both first and second"):
            _register(into, owner, spec, "second", other)
    assert owner == {"shared": "first"} and catalog == {}


def test_conflicts_name_every_key_of_the_entity():
    from quanta_db.store.expectations import _describe

    assert _describe({"model": "small", "step": 8}) == "model='small', step=8"


def test_an_aborted_run_says_so_and_its_staging_is_gone(store):
    from quanta_db.errors import QuantaError

    run = store.begin_run("test_abort", {"n": 1})
    run.abort()
    assert not run.staging.exists()
    with pytest.raises(QuantaError, match=f"run {run.run_id} is already aborted"):
        run.commit()


def test_artifacts_are_memory_mapped_and_a_missing_one_is_named(store):
    import numpy as np

    from quanta_db.errors import InputError

    with store.begin_run("test_artifact", {"n": 2}) as run:
        run.write_artifact("values", np.arange(6, dtype=np.float32).reshape(2, 3))
        run.write_artifact("scalar", np.float64(3.5))  # a second one into the same folder
        run.commit()
    values = store.artifact(run.run_id, "values")
    assert isinstance(values, np.memmap) and values.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert float(store.artifact(run.run_id, "scalar")) == 3.5
    rows = store.query_df("SELECT path, rows FROM files WHERE table_name = 'artifact' ORDER BY path")
    assert [(Path(p).name, n) for p, n in zip(rows.path, rows.rows)] == [("scalar.npy", 1), ("values.npy", 2)]
    with pytest.raises(InputError, match=f"run '{run.run_id}' has no artifact 'other'"):
        store.artifact(run.run_id, "other")


def test_resume_folders_differ_by_job_and_by_parameters(store):
    folder = store.resume_dir("clusters", {"k": 1})
    assert folder == store.resume_dir("clusters", {"k": 1}) and liveness.read_marker(folder)["job"] == "clusters"
    assert len({folder, store.resume_dir("clusters", {"k": 2}), store.resume_dir("metrics", {"k": 1})}) == 3
    for path in (store.root / "staging").iterdir():
        liveness.let_go(path)


def test_saved_analyses_are_dropped_as_what_they_are():
    from quanta_db.store.views import drop_saved_view_sql

    assert drop_saved_view_sql("plain") == 'DROP VIEW IF EXISTS main."plain"'


def test_lock_errors_are_told_from_other_errors_by_either_message():
    from quanta_db.store.catalog import _is_lock_error

    assert _is_lock_error(Exception('IO Error: Could not set lock on file "catalog.duckdb"'))
    assert _is_lock_error(Exception("Conflicting lock is held in python (PID 7)"))
    assert not _is_lock_error(Exception("Invalid Input Error: cannot change lock_configuration"))
    assert not _is_lock_error(Exception("IO Error: could not set the file size"))  # no lock in it


def test_a_failed_commit_rolls_its_transaction_back(store):
    from quanta_db.store.runs import _rollback_quietly

    with store.write() as con:
        con.execute("BEGIN TRANSACTION")
        con.execute("INSERT INTO saved_queries (name, sql, sha256) VALUES ('half', 'SELECT 1', 'x')")
        _rollback_quietly(con)
        assert con.execute("SELECT count(*) FROM saved_queries WHERE name = 'half'").fetchone()[0] == 0
        _rollback_quietly(con)  # no transaction open: nothing to say


def test_the_heartbeat_runs_at_its_default_interval_without_the_setting(tmp_path, monkeypatch):
    monkeypatch.delenv(liveness.HEARTBEAT_ENV, raising=False)
    monkeypatch.setattr(liveness, "_thread", None)
    monkeypatch.setattr(liveness, "_registered", set())
    liveness.keep_alive(tmp_path)
    time.sleep(0.3)
    assert liveness._thread.is_alive()  # sleeping its 10 s, not failed on a missing setting


def test_resume_folders_are_named_by_the_job_and_its_identity_hash(store):
    from quanta_db.store.runs import params_hash

    folder = store.resume_dir("clusters", {"k": 1})
    assert folder.name == f"resume-clusters-{params_hash('clusters', {'k': 1})[:16]}"  # found again after an upgrade
    liveness.let_go(folder)


@pytest.mark.slow
def test_status_lists_the_ten_newest_runs_by_default(store):
    import numpy as np

    for i in range(11):
        with store.begin_run("test_many", {"i": i}) as run:
            run.write_artifact("x", np.zeros(1))
            run.commit()
    assert len(store.status()["last_runs"]) == 10


def test_a_run_missing_from_the_catalog_is_no_other_shard(store):
    from quanta_db.store.expectations import _other_shard

    with store.read() as con:
        assert not _other_shard(con, "no-such-run", (0, 2))
        assert not _other_shard(con, "no-such-run", None)


def test_the_landlock_version_is_the_kernels():
    import ctypes
    import platform

    from quanta_db.store.kernel_wall import landlock_abi

    if platform.system() != "Linux":
        assert landlock_abi() == 0
        return
    # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) asked directly
    asked = ctypes.CDLL(None, use_errno=True).syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    assert landlock_abi() == max(asked, 0)


def test_drops_within_one_commit_add_up(store):
    from quanta_db.store.lineage import Dropped, drop

    with store.write() as con:
        for name in ("a", "b", "c"):
            con.execute("INSERT INTO saved_queries (name, sql, sha256) VALUES (?, 'SELECT 1', 'x')", [name])
        dropped = Dropped()
        drop(con, "saved_queries", {"name": "a"}, dropped)  # two replacements in one commit
        drop(con, "saved_queries", {"name": "b"}, dropped)
        assert dropped.rows["saved_queries"] == 2 and dropped.summary() == {"saved_queries": 2}
        con.execute("DELETE FROM saved_queries WHERE name = 'c'")


def test_gc_keeps_live_and_ready_runs_and_removes_the_dead_and_the_orphans(corpus_store, monkeypatch):
    import subprocess
    import sys

    store = corpus_store
    assert store.gc().staging_removed == []  # a store with no staging folder at all
    staging = store.root / "staging"
    monkeypatch.setattr(liveness, "_registered", set())
    liveness.write_marker(staging / "a-live", run_id="a")  # this process, beating
    (staging / "b-ready").mkdir(parents=True)
    (staging / "b-ready" / liveness.MARKER).write_text('{"pid": 1, "host": "elsewhere", "ready": true}')
    old = time.time() - 10 * liveness.stale_after_s()
    os.utime(staging / "b-ready" / liveness.MARKER, (old, old))  # stale, but kept ready to commit
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    for name in ("c-dead", "d-dead"):  # after the kept ones in sorted order: gc goes on past them
        (staging / name).mkdir()
        (staging / name / liveness.MARKER).write_text(
            f'{{"pid": {dead.stdout.strip()}, "host": "{socket.gethostname()}"}}')
    orphan = store.root / "tables" / "tokens" / "corpus=toy" / "part-orphan.parquet"
    orphan.write_bytes(b"not listed")
    empty = store.root / "tables" / "gone" / "x=1" / "y=2"
    empty.mkdir(parents=True)
    report = store.gc()
    assert report.staging_kept == ["a-live", "b-ready"]
    assert report.staging_removed == ["c-dead", "d-dead"] and not (staging / "c-dead").exists()
    assert report.orphans_removed == ["tables/tokens/corpus=toy/part-orphan.parquet"] and not orphan.exists()
    assert not (store.root / "tables" / "gone").exists()  # empty folders, deepest first
    assert int(store.query_df("SELECT count(*) AS n FROM tokens")["n"][0]) > 0  # committed files untouched
    forced = store.gc(force=True)
    assert forced.staging_removed == ["a-live", "b-ready"] and not any(staging.iterdir())
    liveness.let_go(staging / "a-live")


def test_gc_keeps_committed_artifacts_and_the_stores_own_folders(store):
    import numpy as np

    with store.begin_run("test_artifact", {"n": 1}) as run:
        run.write_artifact("kept", np.arange(3))
        run.commit()
    artifacts = [path for path in (store.root / "artifacts").rglob("*") if path.is_file()]
    orphan = store.root / "tables" / "tokens" / "corpus=x" / "part-orphan.parquet"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"not listed")
    assert store.gc().orphans_removed == ["tables/tokens/corpus=x/part-orphan.parquet"]
    assert artifacts and all(path.is_file() for path in artifacts)  # listed by the catalog, not by the lake
    assert (store.root / "tables").is_dir() and not (store.root / "tables" / "tokens").exists()


def test_owner_alive_leaves_a_live_process_alone_and_reads_defaults(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.delenv(liveness.STALE_AFTER_ENV, raising=False)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        folder = tmp_path / "other"
        folder.mkdir()
        (folder / liveness.MARKER).write_text(f'{{"pid": {sleeper.pid}, "host": "{socket.gethostname()}"}}')
        assert liveness.owner_alive(folder)
        time.sleep(0.2)
        assert sleeper.poll() is None  # asked whether it lives (signal 0), not signalled
    finally:
        sleeper.kill()
        sleeper.wait()
    no_pid = tmp_path / "no_pid"
    no_pid.mkdir()
    (no_pid / liveness.MARKER).write_text(f'{{"host": "{socket.gethostname()}"}}')
    liveness.owner_alive(no_pid)  # judged without a pid, never a TypeError
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / liveness.MARKER).write_text('{"pid": 1, "host": "another-host"}')
    assert liveness.owner_alive(elsewhere)  # fresh against the default five minutes


def test_has_files_by_per_file_keys(corpus_store):
    assert corpus_store.has_files("tokens", corpus="toy")
    assert not corpus_store.has_files("tokens", corpus="nope")


def test_the_sqlalchemy_engines_hold_no_connection_and_read_the_saved_table_functions(corpus_store, tmp_path):
    import pandas as pd
    from sqlalchemy.pool import NullPool

    from quanta_db.errors import StoreError
    from quanta_db.store.catalog import sqlalchemy_engine

    store = corpus_store
    table_function = "SELECT * FROM corpus_tokens('toy', document_id := 0) ORDER BY ALL"
    checked, unsafe = store.engine(), store.engine(unsafe=True)
    for engine in (checked, unsafe):
        assert isinstance(engine.pool, NullPool)  # nothing held between statements: commits never wait on it
        pd.testing.assert_frame_equal(pd.read_sql(table_function, engine), store.query_df(table_function),
                                      check_dtype=False)
    # the lake's own table function is no saved analysis: the checked engine knows the store's
    for refused in ("PRAGMA database_list", "SELECT * FROM ducklake_snapshots('lake')"):
        with pytest.raises(Exception, match="only (SELECT|queries that read)"):
            pd.read_sql(refused, checked)
    assert "lake" in set(pd.read_sql("PRAGMA database_list", unsafe)["name"])  # unchecked, yet read-only:
    with pytest.raises(Exception, match="read-only"), unsafe.connect() as con:
        con.exec_driver_sql("CREATE TABLE x (a INT)")
    with pytest.raises(StoreError, match=r"^\S+nowhere is not a quanta-db store \(no catalog.ducklake or "
                                         r"catalog.json\); run `quanta-db init`$"):
        sqlalchemy_engine(tmp_path / "nowhere", unsafe=False)


def test_pandas_asks_the_catalog_for_a_table_only_when_given_a_name(corpus_store, monkeypatch):
    """pandas.read_sql asks whether its text names a table before it runs it; SQL text is
    answered without a catalog query (60 ms a statement); a name is still looked up."""
    import pandas as pd
    import sqlalchemy
    from duckdb_engine import Dialect

    asked = []
    plain = Dialect.has_table
    monkeypatch.setattr(Dialect, "has_table", lambda self, *a, **kw: asked.append(a[1]) or plain(self, *a, **kw))
    for engine in (corpus_store.engine(), corpus_store.engine(unsafe=True)):
        asked.clear()
        for sql in ("SELECT count(*) AS n FROM documents", "SELECT\tcount(*)\nFROM documents", "SELECT(1)"):
            assert len(pd.read_sql(sql, engine)) == 1
        assert asked == []
        inspector = sqlalchemy.inspect(engine)
        assert inspector.has_table("documents") and not inspector.has_table("Xnowhere")
        assert not inspector.has_table("documents", schema="nowhere")  # the schema is passed on
        assert asked == ["documents", "Xnowhere", "documents"]


def test_read_fact_reads_the_partition_and_columns_asked_for(corpus_store):
    from quanta_db import ingest_contexts

    store = corpus_store
    ingest_contexts(store, "toy", "ctx", per_subset=2, length=8)
    every = store.read_fact("documents")
    assert every.schema.equals(fact_table("documents").schema)  # the declared types, whatever the files hold
    assert set(every.column("corpus").to_pylist()) == {"toy", "ctx"}
    doc_ids = store.read_fact("documents", ["doc_id"], partition={"corpus": "ctx"})
    assert doc_ids.column_names == ["doc_id"] and sorted(doc_ids.column(0).to_pylist()) == store.query_df(
        "SELECT doc_id FROM documents WHERE corpus = 'ctx' ORDER BY doc_id")["doc_id"].tolist()
    assert store.read_fact("documents", ["doc_id"], partition={"corpus": "nope"}).num_rows == 0
    assert store.read_fact("documents", ["doc_id", "corpus"], partition={"corpus": "nope"}).column_names == [
        "doc_id", "corpus"]
    import pyarrow.dataset as ds

    short = store.read_fact("documents", ["doc_id"], where=ds.field("n_tokens") < 20)
    assert sorted(short.column(0).to_pylist()) == store.query_df(
        "SELECT doc_id FROM documents WHERE n_tokens < 20 ORDER BY doc_id")["doc_id"].tolist()
    assert 0 < short.num_rows < every.num_rows
    for path in store.committed_paths("documents"):  # files of wider types (as another writer may leave)
        pq.write_table(pq.read_table(path).cast(pa.schema(
            [pa.field(f.name, pa.int64() if f.type == pa.int32() else f.type) for f in fact_table("documents").schema])), path)
    assert store.read_fact("documents").schema.equals(fact_table("documents").schema)


def test_query_frames_keep_integers_integral_beside_nulls(store):
    frame = store.query_df("SELECT * FROM (VALUES (1::INTEGER, true), (NULL, NULL)) AS t(n, b)")
    assert str(frame["n"].dtype) == "Int32" and str(frame["b"].dtype) == "boolean"
    assert frame["n"].tolist()[0] == 1 and frame["n"].isna().tolist() == [False, True]


def test_the_manifest_lists_exactly_the_committed_files(corpus_store, tmp_path):
    """pyarrow.dataset over the manifest equals the view row for row; an orphaned file under
    tables/, which a glob would read too, is not in it."""
    import io

    import pandas as pd
    import pyarrow.dataset as ds
    from click.testing import CliRunner

    from quanta_db import ingest_contexts
    from quanta_db.cli.main import cli
    from quanta_db.errors import InputError

    store = corpus_store
    ingest_contexts(store, "toy", "ctx", per_subset=2, length=8)
    orphan = store.root / "tables" / "tokens" / "corpus=toy" / "part-orphan.parquet"
    pq.write_table(store.read_fact("tokens").slice(0, 5), orphan)
    manifest = store.manifest("tokens")
    assert manifest.column_names == ["path", "corpus", "rows"] and str(orphan) not in manifest.column("path").to_pylist()
    assert sorted(set(manifest.column("corpus").to_pylist())) == ["ctx", "toy"]
    assert manifest.schema == pa.schema([("path", pa.string()), ("corpus", pa.string()), ("rows", pa.int64())])
    losses = fact_table("token_losses")  # no file yet: the columns keep their declared types all the same
    assert store.manifest("token_losses").schema == pa.schema(
        [("path", pa.string()), *[(key, losses.schema.field(key).type) for key in losses.file_keys], ("rows", pa.int64())])
    rows = ds.dataset(manifest.column("path").to_pylist(), format="parquet").to_table().to_pandas()
    view = store.query_df("SELECT * FROM tokens")
    key = ["corpus", "doc_id", "pos"]
    pd.testing.assert_frame_equal(rows[view.columns].sort_values(key).reset_index(drop=True),
                                  view.sort_values(key).reset_index(drop=True), check_dtype=False)
    assert sum(manifest.column("rows").to_pylist()) == len(view)
    assert len(ds.dataset(str(store.root / "tables" / "tokens"), format="parquet").to_table()) == len(view) + 5
    printed = CliRunner().invoke(cli, ["--store", str(store.root), "export", "manifest", "tokens"])
    assert printed.exit_code == 0
    assert pd.read_csv(io.StringIO(printed.output))["path"].tolist() == manifest.column("path").to_pylist()
    with pytest.raises(InputError, match="^unknown table 'runs'; a manifest lists the files of a fact table") as refusal:
        store.manifest("runs")
    assert str(refusal.value).endswith(f"({', '.join(sorted(fact_tables()))})")
    refused = CliRunner().invoke(cli, ["--store", str(store.root), "export", "manifest", "nope"])
    assert refused.exit_code == 1 and refused.output.count("\n") == 1 and refused.output.startswith("Error: unknown")


def test_a_registration_raced_by_another_run_drops_only_its_own_facts(store):
    """Run A registers tokenizers t2 and t1; run B registers t1 identically and commits first. A's
    commit keeps B's t1 (its vocabulary not doubled) and adds t2 with its own vocabulary (each
    registration is looked up, whether the one before it was new or not)."""
    import pyarrow as pa

    def register(run, name: str, tokens: list[str]) -> None:
        vocab = pa.table({"tokenizer": pa.repeat(name, len(tokens)), "token_id": pa.array(range(len(tokens)), pa.int32()),
                          "token": tokens})
        run.register("tokenizers", {"tokenizer": name, "source": "test", "vocab_hash": f"h-{name}",
                                    "vocab_size": len(tokens), "run_id": run.run_id},
                     key=["tokenizer"], same=["vocab_hash", "vocab_size"], facts={"vocab": vocab})

    first = store.begin_run("registrations", {"run": "a"})
    register(first, "t2", ["x", "y"])
    register(first, "t1", ["a", "b", "c"])
    with store.begin_run("registrations", {"run": "b"}) as other:
        register(other, "t1", ["a", "b", "c"])
        other.commit()
    first.commit()
    vocab = store.query_df("SELECT tokenizer, list(token ORDER BY token_id) AS tokens FROM vocab GROUP BY ALL "
                           "ORDER BY tokenizer")
    assert [[name, list(tokens)] for name, tokens in vocab.values.tolist()] == [["t1", ["a", "b", "c"]],
                                                                                ["t2", ["x", "y"]]]
    assert store.query_df("SELECT tokenizer, run_id FROM tokenizers ORDER BY tokenizer").values.tolist() == [
        ["t1", other.run_id], ["t2", first.run_id]]


def test_a_registration_raced_by_a_different_one_commits_nothing_and_names_it(store, store_snapshot):
    """Run B registers tokenizer t1 with another vocabulary and commits first: A's commit is refused
    in one line naming the entity and the column that differs, and leaves the store as B left it."""
    from quanta_db.store.expectations import ConflictError

    def register(run, vocab_hash: str) -> None:
        run.register("tokenizers", {"tokenizer": "t1", "source": "test", "vocab_hash": vocab_hash, "vocab_size": 1,
                                    "run_id": run.run_id}, key=["tokenizer"], same=["vocab_hash", "vocab_size"],
                     facts={})

    first = store.begin_run("registrations", {"run": "a"})
    register(first, "h-a")
    with store.begin_run("registrations", {"run": "b"}) as other:
        register(other, "h-b")
        other.commit()
    before = store_snapshot(store)
    with pytest.raises(ConflictError) as refused:
        first.commit()
    assert str(refused.value) == ("tokenizers tokenizer='t1' was registered with a different vocab_hash, "
                                  "vocab_size while this job ran; nothing was committed")
    assert store_snapshot(store) == before
    with store.begin_run("registrations", {"run": "c"}) as later:  # the refused transaction left nothing open
        register(later, "h-b")
        assert later.commit() == 0


def test_queries_of_one_process_reuse_a_confined_copy_until_a_commit_lands(store, monkeypatch):
    import numpy as np

    from quanta_db.errors import QueryError
    from quanta_db.store import catalog, copies
    from quanta_db.store.store import Store

    opened = []

    class Counted(catalog.PrivateCatalog):
        def __init__(self, *args, **kwargs):
            opened.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(catalog, "PrivateCatalog", Counted)
    copies.forget(store.root)
    runs = "SELECT count(*) AS n FROM runs WHERE status = 'committed'"
    assert store.query_arrow(runs)["n"][0].as_py() == store.query_arrow(runs)["n"][0].as_py() == 0
    assert len(opened) == 1
    with store.begin_run("test_copy", {"n": 1}) as run:
        run.write_artifact("x", np.zeros(1))
        run.commit()
    assert store.query_arrow(runs)["n"][0].as_py() == 1  # the commit is seen at once
    assert len(opened) == 2
    with pytest.raises(QueryError, match="Permission|not allowed"):  # the new copy is confined too
        store.query_arrow("SELECT * FROM read_text('/etc/hostname')")
    for index in range(copies.MAX_SHARED_STORES + 1):  # copies of the least recent stores are closed
        other = Store.init(store.root.parent / f"other-{index}")
        other.query_arrow("SELECT 1")
    assert (store.root, False) not in copies._shared and len(copies._shared) == copies.MAX_SHARED_STORES


OTHER_PROCESS_WRITES = ("import sys; from quanta_db.store.catalog import connect\n"
                        "with connect(sys.argv[1], read_only=False) as con:\n"
                        "    con.execute(\"INSERT INTO saved_queries (name, sql, sha256) VALUES ('other', 'SELECT 1', 'x')\")")


def test_background_copies_answer_from_the_last_state_until_the_next_is_taken(store):
    import subprocess
    import sys

    import numpy as np

    from quanta_db.store.copies import Snapshots

    saved = "SELECT count(*) FROM saved_queries WHERE name = 'other'"
    runs = "SELECT count(*) FROM runs WHERE status = 'committed'"
    snapshots = Snapshots(store.root, background=True)
    try:
        first = snapshots.current()
        subprocess.run([sys.executable, "-c", OTHER_PROCESS_WRITES, str(store.root)], check=True)
        answered = snapshots.current()  # another process's commit: not waited for
        assert answered.generation == first.generation
        assert snapshot_count(answered, saved) == 0
        deadline = time.monotonic() + 60
        while snapshots.current().generation == first.generation and time.monotonic() < deadline:
            time.sleep(0.05)
        assert snapshot_count(snapshots.current(), saved) == 1
        with store.begin_run("test_copy", {"n": 1}) as run:  # a commit of this process: seen at once
            run.write_artifact("x", np.zeros(1))
            run.commit()
        assert snapshot_count(snapshots.current(), runs) == 1
    finally:
        snapshots.close()


def test_a_store_opened_for_polling_shows_another_processs_commit_without_waiting_for_it(store):
    import subprocess
    import sys

    import numpy as np

    from quanta_db.store.store import Store

    polling = Store.open(store.root, background_refresh=True)
    strict = Store.open(store.root)
    saved = "SELECT count(*) AS n FROM saved_queries WHERE name = 'other'"
    runs = "SELECT count(*) AS n FROM runs WHERE status = 'committed'"

    def answer(reader, sql):
        return reader.query_arrow(sql)["n"][0].as_py()

    assert answer(polling, saved) == 0
    subprocess.run([sys.executable, "-c", OTHER_PROCESS_WRITES, str(store.root)], check=True)
    assert answer(polling, saved) == 0  # answered from the state before while the next copy is taken
    assert answer(strict, saved) == 1  # a strict reader (the default) waits for its copy: it sees the commit at once
    deadline = time.monotonic() + 60
    while answer(polling, saved) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer(polling, saved) == 1
    with polling.begin_run("test_copy", {"n": 1}) as run:  # a commit of this process: seen at once
        run.write_artifact("x", np.zeros(1))
        run.commit()
    assert answer(polling, runs) == 1


def test_a_private_catalog_shows_one_state_to_every_connection_it_opens(store):
    import numpy as np

    from quanta_db.store import catalog

    runs = "SELECT count(*) FROM runs WHERE status = 'committed'"
    private = catalog.PrivateCatalog(store.root)
    try:
        first = private.open()
        with store.begin_run("test_copy", {"n": 1}) as run:  # replaces the readers' copy meanwhile
            run.write_artifact("x", np.zeros(1))
            run.commit()
        second = private.open()
        assert first.execute(runs).fetchone()[0] == second.execute(runs).fetchone()[0] == 0
        first.close()
        second.close()
    finally:
        private.close()
    later = catalog.PrivateCatalog(store.root)
    try:
        with contextlib.closing(later.open()) as con:
            assert con.execute(runs).fetchone()[0] == 1
    finally:
        later.close()


def test_the_stores_own_reads_attach_the_held_state_and_a_state_with_a_log_is_copied(store, catalog_backend, tmp_path):
    import numpy as np

    from quanta_db.store import catalog, lake

    if catalog_backend != "duckdb":
        pytest.skip("a catalog on PostgreSQL has no metadata file")
    attached = "SELECT path FROM duckdb_databases() WHERE database_name = ?"
    private = catalog.PrivateCatalog(store.root)
    try:
        with contextlib.closing(private.open_metadata()) as con:
            held = con.execute(attached, [lake.METADATA_CATALOG]).fetchone()[0]
            assert "quanta-db-sql-" not in held and Path(held).exists()  # the held file (DuckDB shows where the link points)
            before = lake.snapshot_identity(con, private.locator)
        with store.begin_run("test_held", {"n": 1}) as run:  # replaces the readers' copy meanwhile
            run.write_artifact("x", np.zeros(1))
            run.commit()
        with contextlib.closing(private.open_metadata()) as con:
            assert lake.snapshot_identity(con, private.locator) == before
        (tmp_path / "empty.wal").write_bytes(b"")
        private._keep_copy(tmp_path / "empty.wal", lake.LOCAL_FILE + ".wal")  # as a dead writer's log is kept
        with contextlib.closing(private.open_metadata()) as con:
            path = con.execute(attached, [lake.METADATA_CATALOG]).fetchone()[0]
            assert "quanta-db-sql-" in path and not Path(path).exists()  # a copy, removed once attached
            assert lake.snapshot_identity(con, private.locator) == before
    finally:
        private.close()


def test_the_next_copys_first_connection_is_made_ahead_and_closed_with_the_copies(store):
    import numpy as np

    from quanta_db.store.copies import Snapshots

    copies = Snapshots(store.root)
    try:
        copies.current()
        deadline = time.monotonic() + 60
        while copies._blank is None and time.monotonic() < deadline:
            time.sleep(0.01)
        ahead = copies._blank
        assert ahead is not None
        with store.begin_run("test_copy", {"n": 1}) as run:
            run.write_artifact("x", np.zeros(1))
            run.commit()
        assert snapshot_count(copies.current(), "SELECT count(*) FROM runs WHERE status = 'committed'") == 1
        assert copies._blank is not ahead  # taken by the new copy
    finally:
        copies.close()
    assert copies._blank is None and not copies._making
    with pytest.raises(duckdb.ConnectionException):
        ahead.execute("SELECT 1")  # the new copy's first connection was closed with it


def test_user_sql_reads_no_catalog_file_through_the_descriptors_the_process_holds(store, catalog_backend):
    from quanta_db.errors import QueryError

    if catalog_backend != "duckdb":
        pytest.skip("a catalog on PostgreSQL has no file here")
    store.query_arrow("SELECT count(*) FROM runs")  # this process now holds its state of the catalog open
    held = [fd for fd in os.listdir("/proc/self/fd")
            if "catalog" in (os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else "")]
    assert held
    for fd in held:
        with pytest.raises(QueryError, match="Permission|not allowed"):
            store.query_arrow(f"SELECT size FROM read_blob('/proc/self/fd/{fd}')")


def test_init_makes_missing_folders_upgrades_a_store_and_refuses_what_is_not_one(tmp_path, monkeypatch):
    from quanta_db.errors import StoreError
    from quanta_db.store import lake
    from quanta_db.store.store import Store

    monkeypatch.delenv(lake.CATALOG_ENV, raising=False)
    nested = tmp_path / "a" / "b" / "store"
    first = Store.init(nested)
    assert (nested / lake.LOCAL_FILE).is_file() and (nested / "tables").is_dir()
    version = first.check_schema()
    assert Store.init(nested).check_schema() == version  # a store already: upgraded, nothing lost
    with pytest.raises(StoreError, match=rf"^{nested} is already a store, with its catalog at {nested / lake.LOCAL_FILE}$"):
        Store.init(nested, "postgresql://someone@elsewhere/db")
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    with pytest.raises(StoreError, match=rf"^{a_file} exists and is not a directory$"):
        Store.init(a_file)
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match=rf"^{full} is not empty and is not a quanta-db store; choose an empty directory$"):
        Store.init(full)
    old = tmp_path / "old"
    old.mkdir()
    (old / lake.LEGACY_FILE).write_bytes(b"")
    with pytest.raises(StoreError, match=rf"^{old} is a store of quanta-db 0.1; upgrade it with `quanta-db migrate`$"):
        Store.init(old)
    with pytest.raises(StoreError, match=rf"^{old} is a store of quanta-db 0.1 \(its catalog is {lake.LEGACY_FILE}\); "
                                         r"upgrade it with `quanta-db migrate`$"):
        Store.open(old)
    assert a_file.read_text() == "mine" and sorted(p.name for p in full.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in old.iterdir()) == [lake.LEGACY_FILE]


def _commit_vocab(store, tokenizers: list[str], tokens: list[str]) -> None:
    """One committed run of ``vocab`` rows, token id 0 of each tokenizer."""
    with store.begin_run("test", {}) as run:
        run.write("vocab", pa.table({"tokenizer": tokenizers, "token_id": [0] * len(tokens), "token": tokens}))
        run.commit()


def test_a_process_checks_the_schema_of_one_catalog_state_once(store, monkeypatch):
    """Opening a store again checks its schema only when its catalog changed since this process
    checked it (the change stamp is far cheaper than the check)."""
    from quanta_db.store import store as store_module
    from quanta_db.store.store import Store

    checks = []
    real = Store.check_schema
    monkeypatch.setattr(Store, "check_schema", lambda self, *args, **kwargs: checks.append(1) or real(self, *args, **kwargs))
    monkeypatch.setattr(store_module, "_SCHEMA_CHECKED", {})
    Store.open(store.root)
    Store.open(store.root)
    assert len(checks) == 1
    _commit_vocab(store, ["t"], ["a"])
    Store.open(store.root)
    assert len(checks) == 2
    # the same catalog state against other code (a newer release's migration, say) is checked again
    import dataclasses

    from quanta_db.errors import StoreError
    from quanta_db.store import migrations

    code = migrations.discover()
    newer = [*code, dataclasses.replace(code[-1], version=code[-1].version + 1, name="newer", sql="SELECT 1;")]
    monkeypatch.setattr(migrations, "discover", lambda *args: newer)
    with pytest.raises(StoreError, match=f"this quanta-db expects {code[-1].version + 1}"):
        Store.open(store.root)
    assert len(checks) == 3
    monkeypatch.setattr(migrations, "discover", lambda *args: code)
    Store.open(store.root)
    assert len(checks) == 3


def test_opening_a_store_that_is_not_there_makes_nothing_unless_asked_to(tmp_path):
    from quanta_db.errors import StoreError
    from quanta_db.store.store import Store

    missing, empty = tmp_path / "nowhere", tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StoreError) as error:
        Store.open(missing)
    assert str(error.value) == f"store {missing} does not exist; create it with `quanta-db init`"
    for check in (True, False):  # unchecked (as `migrate` opens a store of 0.1) it must still be a store
        with pytest.raises(StoreError, match="is not a quanta-db store"):
            Store.open(empty, check=check)
    assert not missing.exists() and list(empty.iterdir()) == []
    for folder in (missing, empty):  # create=True: a store, in a missing or an empty folder
        assert Store.open(folder, create=True).query_df("SELECT count(*) AS n FROM runs")["n"].tolist() == [0]


def test_a_process_counts_each_writing_connection_once_and_keeps_one_set_of_copies_per_store(store, monkeypatch):
    """``catalog.writes_in_process`` counts this process's closed writing connections (one each:
    read-only ones are not writes), and ``copies.shared`` keeps one set of copies per store and
    refresh mode in a process, made anew in a forked child (whose parent's connections it must
    not use), closing the least recently used beyond ``MAX_SHARED_STORES``."""
    from quanta_db.store import catalog, copies

    before = catalog.writes_in_process()
    with catalog.connect(store.root, read_only=False):
        pass
    with catalog.connect(store.root, read_only=True):
        pass
    assert catalog.writes_in_process() == before + 1
    first = copies.shared(store.root)
    assert copies.shared(store.root) is first and copies.shared(Path(str(store.root))) is first
    assert copies.shared(store.root, background=True) is not first
    monkeypatch.setattr(copies, "_shared_pid", -1)  # as a forked child finds it
    child = copies.shared(store.root)
    assert child is not first and copies.shared(store.root) is child
    others = [copies.shared(store.root / f"other-{n}") for n in range(copies.MAX_SHARED_STORES - 1)]
    assert copies.shared(store.root) is child  # now the most recently used
    copies.shared(store.root / "one-more")
    assert others[0]._closed and not any(o._closed for o in others[1:]) and not child._closed
    copies.forget()


def test_a_copy_plans_on_one_connection_and_refuses_to_once_closed(store, monkeypatch):
    """``Snapshot._planning``: the planning connection a second thread made while the first was
    kept is closed (one planner per copy), and a closed copy plans nothing."""
    from quanta_db.errors import QuantaError
    from quanta_db.store import snapshots

    snapshot = snapshots.Snapshot(store.root)
    made, real = [], snapshots.Snapshot._planner_connection

    def racing(self):
        connection = real(self)
        made.append(connection)
        if len(made) == 1:
            self._planning()  # another thread, done first
        return connection

    monkeypatch.setattr(snapshots.Snapshot, "_planner_connection", racing)
    planner = snapshot._planning()
    assert len(made) == 2 and planner.connection is made[1] and snapshot._planning() is planner
    with pytest.raises(duckdb.ConnectionException):
        made[0].execute("SELECT 1")
    assert planner.connection.execute("SELECT 1").fetchall() == [(1,)]
    snapshot.close()
    closing = snapshots.Snapshot(store.root)

    def closed_meanwhile(self):
        connection = real(self)
        made.append(connection)
        self.close()
        return connection

    monkeypatch.setattr(snapshots.Snapshot, "_planner_connection", closed_meanwhile)
    with pytest.raises(QuantaError, match="^this copy of the catalog was closed$"):
        closing._planning()
    assert closing._planner is None
    with pytest.raises(duckdb.ConnectionException):
        made[2].execute("SELECT 1")


@pytest.fixture
def files_found_on_a_connection(monkeypatch):
    """A statement's files are found on a connection with the lake attached, which becomes its
    reader, rather than read off the catalog's metadata (on PostgreSQL too)."""
    from quanta_db.store import snapshots

    monkeypatch.setattr(snapshots, "READ_OFF_METADATA", False)
    monkeypatch.setattr(snapshots, "READ_OFF_POSTGRES", False)


@pytest.mark.usefixtures("files_found_on_a_connection")
def test_a_connection_that_found_a_statements_files_is_kept_for_the_next_when_a_reader_was_ready(store):
    """``Snapshot._reach`` finds a statement's files on the copy's unconfined connection, which
    becomes the statement's reader; and (``_reader_for``) when a kept reader already answers a
    statement, the connection its files were found on is given back to the copy (its next
    catalog read or reader uses it) rather than dropped."""
    from quanta_db.store import snapshots

    _commit_vocab(store, ["t"], ["a"])
    snapshot = snapshots.Snapshot(store.root)
    try:
        with snapshot.reader("SELECT count(*) FROM vocab WHERE tokenizer = 't'") as (first, narrowed, _):
            assert narrowed and first.execute("SELECT count(*) FROM vocab WHERE tokenizer = 't'").fetchone() == (1,)
        # its files were found on the connection the copy opened, which then became its reader:
        # no second connection attached the lake (no planning one either: the plan is the tree's)
        assert snapshot._planner is None and snapshot._spare is None and len(snapshot._readers) == 1
        spare = snapshot._private.open()
        snapshot._give_spare(spare)
        with snapshot.reader("SELECT token FROM vocab WHERE tokenizer = 't'") as (second, _, _):
            assert second is first
        assert snapshot._spare is spare
    finally:
        snapshot.close()


def test_a_direct_read_that_does_not_run_is_retried_through_the_lake_with_its_parameters(store, monkeypatch):
    """``querying.run_on``: a statement given a reader with nothing attached (it reads its files
    directly) whose direct read does not run goes through the lake on an attached reader
    confined to the files found with its parameters."""
    from quanta_db.store import copies, querying, snapshots

    _commit_vocab(store, ["t", "u"], ["a", "b"])
    monkeypatch.setattr(snapshots.Snapshot, "direct", lambda self, sql, params=None: "SELECT no_such_function()")
    asked = []
    reader = snapshots.Snapshot.reader

    def recorded(self, sql, params=None, everything=False, attached=False):
        asked.append((params, attached))
        return reader(self, sql, params, everything, attached)

    monkeypatch.setattr(snapshots.Snapshot, "reader", recorded)
    snapshot = copies.shared(store.root).current()
    sql = "SELECT token FROM vocab WHERE tokenizer = ?"
    assert querying.run_on(snapshot, sql, ["u"]).table["token"].to_pylist() == ["b"]
    assert asked == [(["u"], False), (["u"], True)]  # not every file: its own, found with its parameters


def test_every_attempt_of_a_statement_runs_under_its_time_and_row_limits(store, monkeypatch):
    """``querying.run_on``: the retry through the lake after a direct read that does not run keeps
    the caller's time limit and row limit (a retry without them could run for ever)."""
    from quanta_db.store import copies, querying, snapshots

    _commit_vocab(store, ["t", "u"], ["a", "b"])
    monkeypatch.setattr(snapshots.Snapshot, "direct", lambda self, sql, params=None: "SELECT no_such_function()")
    limits = []
    execute = querying._execute

    def recorded(connection, sql, params, time_limit_ms, max_rows, *rest, **flags):
        limits.append((sql, time_limit_ms, max_rows))
        return execute(connection, sql, params, time_limit_ms, max_rows, *rest, **flags)

    monkeypatch.setattr(querying, "_execute", recorded)
    sql = "SELECT token FROM vocab WHERE tokenizer = ?"
    result = querying.run_on(copies.shared(store.root).current(), sql, ["t"], time_limit_ms=60_000, max_rows=1)
    assert result.table["token"].to_pylist() == ["a"]
    assert limits == [("SELECT no_such_function()", 60_000, 1), (sql, 60_000, 1)]


def test_an_owner_statement_that_returns_no_rows_is_an_empty_result(store):
    """``--unsafe`` lets the owner run statements that return nothing (a SET): an empty result."""
    result = store.query("SET VARIABLE answer = 42", unsafe=True)
    assert (result.table.num_columns, result.table.num_rows, result.truncated, result.elapsed_ms) == (0, 0, False, 0.0)


def test_a_copy_on_postgres_is_pinned_to_the_snapshot_its_stamp_read(store, monkeypatch):
    """The newest snapshot is asked once a new copy (the change stamp's, which the copy is then
    pinned to), not a second time by the copy: one server round trip less for every new state."""
    from quanta_db.store import catalog, copies

    if not catalog.locate(store.root).on_postgres:
        pytest.skip("a local copy holds its state in its file: no snapshot is asked")
    asked, latest = [], catalog._latest_snapshot
    monkeypatch.setattr(catalog, "_latest_snapshot", lambda locator: asked.append(locator) or latest(locator))
    snapshots = copies.Snapshots(store.root)
    try:
        with snapshots.for_query() as snapshot:
            assert snapshot.state[0] == latest(catalog.locate(store.root))
        assert len(asked) == 1
    finally:
        snapshots.close()


@pytest.mark.usefixtures("files_found_on_a_connection")
def test_a_snapshot_keeps_its_most_recent_idle_readers_up_to_the_limit(store):
    """Each statement reaching other files gets a reader of its own, its files found on a reader
    already open (``_catalog_reader``: no planning connection is opened while one is); a snapshot
    keeps the ``MAX_READERS`` most recent for later statements and closes the least recent idle one beyond."""
    from quanta_db.store import snapshots

    names = [f"t{i}" for i in range(snapshots.MAX_READERS + 3)]
    _commit_vocab(store, names, names)
    snapshot = snapshots.Snapshot(store.root)
    try:
        used = []
        for name in names:
            with snapshot.reader(f"SELECT count(*) FROM vocab WHERE tokenizer = '{name}'") as (reader, narrowed, _):
                assert narrowed and reader.execute(f"SELECT token FROM vocab WHERE tokenizer = '{name}'").fetchall() == [(name,)]
                used.append(reader)
        assert len(set(map(id, used))) == len(names)  # one reader a statement
        assert snapshot._planner is None  # the later statements' files were found on a kept reader
        kept = [reader.connection for reader in snapshot._readers.values()]
        assert kept == used[-snapshots.MAX_READERS:]
        with pytest.raises(duckdb.ConnectionException):  # the least recent were closed
            used[0].execute("SELECT 1")
    finally:
        snapshot.close()


def test_a_staging_marker_names_its_run_and_a_reloaded_kept_run_takes_the_folder_over(store):
    """``run.json`` names the run, its job and its parameters' hash beside the owning process; a kept
    run loaded again (``Run.load_ready``, as the job's next command does) marks the folder as this
    process's, no longer ready, with the same names and the split it was kept for."""
    from quanta_db.store.runs import Run

    run = store.begin_run("test_kept", {"n": 1})
    named = {"run_id": run.run_id, "kind": "test_kept", "params_hash": run.params_hash}
    owner = {"pid": os.getpid(), "host": socket.gethostname()}
    assert liveness.read_marker(run.staging) == {**named, **owner}
    run.write("vocab", pa.table({"tokenizer": ["tok"], "token_id": [0], "token": ["t0"]}))
    run.keep_for_split("s-1", (1, 3))
    assert liveness.read_marker(run.staging)["ready"]
    reloaded = Run.load_ready(run.staging)
    assert liveness.read_marker(run.staging) == {**named, "split": "s-1", "shard": [1, 3], **owner}
    assert reloaded.run_id == run.run_id
    reloaded.abort()
    assert not run.staging.exists()


@pytest.mark.usefixtures("files_found_on_a_connection")
def test_a_reader_in_use_when_its_snapshot_closes_answers_on_and_is_closed_by_its_last_user(store):
    from quanta_db.store import snapshots

    _commit_vocab(store, ["t"], ["a"])
    snapshot = snapshots.Snapshot(store.root)
    sql = "SELECT token FROM vocab WHERE tokenizer = 't'"
    with snapshot.reader(sql) as (reader, _, _):
        snapshot.close()
        assert reader.execute(sql).fetchall() == [("a",)]
    with pytest.raises(duckdb.ConnectionException):
        reader.execute("SELECT 1")
