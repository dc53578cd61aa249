"""The store's small pieces, each against what it reports checked independently: ``status``
against the Parquet files themselves, ``relation_exists`` against DuckDB's own catalog, kept and
aborted runs, artifacts, ``gc``, the manifest, registrations raced by other runs, and opening a
store (the heartbeat is in test_liveness.py, the catalog states queries read in test_snapshots.py)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from quanta_db.store import liveness
from quanta_db.store.registry import catalog_tables, fact_table, fact_tables
from tests.helpers import commit_vocab


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
    commit_vocab(store, ["t"], ["a"])
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
