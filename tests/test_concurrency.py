"""Real concurrent processes: what a job decided at its start is checked again in its commit.

Each pair of jobs meets at a barrier after both decided and computed, before either commits
(tests/concurrent_job.py), so the race is exercised every time, not by luck.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from quanta_db.cli.main import cli
from quanta_db.demo import toy_corpus as toy
from quanta_db.store.catalog import connect
from quanta_db.store.store import Store

ROOT = Path(__file__).resolve().parent.parent
HELPER = ROOT / "tests" / "concurrent_job.py"


def start(barrier: Path, name: str, *args, wait_ready=(), after=(), wait_go=False, env=None,
          host=None) -> subprocess.Popen:
    own = [str(barrier), name] + (["--host", host] if host else [])
    for other in wait_ready:
        own += ["--wait-ready", other]
    for other in after:
        own += ["--after", other]
    if wait_go:
        own.append("--wait-go")
    return subprocess.Popen([sys.executable, str(HELPER), *own, "--", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


def finish(*procs) -> list[tuple[int, str]]:
    return [(p.wait(timeout=300), p.stdout.read()) for p in procs]


def pair(tmp_path, first_args, second_args, order: bool = False):
    """Run two jobs that both reach their commit before either commits (``order``: first, then second)."""
    barrier = tmp_path / "barrier"
    barrier.mkdir(exist_ok=True)
    a = start(barrier, "a", *first_args, wait_ready=["b"])
    b = start(barrier, "b", *second_args, **({"after": ["a"]} if order else {"wait_ready": ["a"]}))
    return finish(a, b)


def quanta(*args):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def count(store: Store, sql: str) -> int:
    return store.query_arrow(sql).column(0)[0].as_py()


@pytest.fixture
def corpus_args(store, toy_inputs):
    """An empty store (a copy of the session's: ``Store.init`` takes 2 s) and the corpus job's arguments."""
    def args(source, name="toy", *extra):
        return ["--store", store.root, "ingest", "corpus", source, "--name", name, "--tokenizer",
                toy_inputs["tokenizer"], "--max-tokens", 48, "--no-progress", *extra]
    return store.root, args


def test_identical_corpus_ingests_commit_once(corpus_args, toy_inputs, tmp_path):
    store_dir, args = corpus_args
    (rc1, out1), (rc2, out2) = pair(tmp_path, args(toy_inputs["corpus"]), args(toy_inputs["corpus"]))
    assert rc1 == rc2 == 0, out1 + out2
    assert "already committed by run" in out1 + out2
    store = Store.open(store_dir)
    assert count(store, "SELECT count(*) FROM runs WHERE kind = 'corpus'") == 1
    assert count(store, "SELECT count(*) - count(DISTINCT (doc_id, pos)) FROM tokens") == 0
    assert count(store, "SELECT count(*) FROM documents") == count(store, "SELECT n_docs FROM corpora")
    assert count(store, "SELECT count(*) - count(DISTINCT token_id) FROM vocab") == 0


def test_two_files_under_one_corpus_name_first_committer_wins(corpus_args, toy_inputs, tmp_path):
    store_dir, args = corpus_args
    other = toy.write_jsonl(toy_inputs["records"][:7], tmp_path / "other.jsonl")
    (rc1, out1), (rc2, out2) = pair(tmp_path, args(toy_inputs["corpus"]), args(other))
    assert sorted([rc1, rc2]) == [0, 1], out1 + out2
    loser = out1 if rc1 else out2
    assert loser.strip().splitlines()[-1].startswith("Error: corpora corpus='toy' was written by run")
    store = Store.open(store_dir)
    assert count(store, "SELECT count(*) - count(DISTINCT doc_id) FROM documents") == 0
    assert count(store, "SELECT count(*) FROM documents") in (len(toy_inputs["records"]), 7)


def test_two_corpora_with_one_new_tokenizer_register_it_once(corpus_args, toy_inputs, tmp_path):
    store_dir, args = corpus_args
    (rc1, out1), (rc2, out2) = pair(tmp_path, args(toy_inputs["corpus"], "one"), args(toy_inputs["corpus"], "two"))
    assert rc1 == rc2 == 0, out1 + out2
    store = Store.open(store_dir)
    assert count(store, "SELECT count(*) FROM corpora") == 2
    assert count(store, "SELECT count(*) FROM tokenizers") == 1
    assert count(store, "SELECT count(*) FROM vocab") == count(store, "SELECT vocab_size FROM tokenizers")


@pytest.fixture
def losses_args(corpus_args, toy_inputs, toy_model):
    store_dir, args = corpus_args
    quanta(*args(toy_inputs["corpus"]))
    return store_dir, ["--store", store_dir, "ingest", "losses", "--model", toy_model["dir"], "--name", "tiny",
                       "--corpus", "toy", "--steps", "8", "--no-progress"]


def test_identical_loss_ingests_commit_once(losses_args, tmp_path):
    store_dir, args = losses_args
    (rc1, out1), (rc2, out2) = pair(tmp_path, args, args)
    assert rc1 == rc2 == 0, out1 + out2
    assert "already committed by run" in out1 + out2
    store = Store.open(store_dir)
    assert count(store, "SELECT count(*) FROM token_losses") == count(
        store, "SELECT sum(greatest(n_tokens - 1, 0)) FROM documents")
    assert count(store, "SELECT count(*) FROM runs WHERE kind = 'losses' AND status = 'committed'") == 1


def test_losses_of_a_corpus_replaced_meanwhile_are_refused(losses_args, corpus_args, toy_inputs, tmp_path):
    store_dir, loss_args = losses_args
    _, corpus = corpus_args
    other = toy.write_jsonl(toy_inputs["records"][5:12], tmp_path / "other.jsonl")
    two_steps = [("4,8" if a == "8" else a) for a in loss_args]  # the next checkpoint is staged when the first fails
    (rc1, out1), (rc2, out2) = pair(tmp_path, corpus(other, "toy", "--force"), two_steps, order=True)
    assert rc1 == 0, out1
    assert rc2 == 1 and out2.strip().splitlines()[-1].startswith("Error: input corpora corpus='toy' was written by run"), out2
    store = Store.open(store_dir)
    assert count(store, "SELECT count(*) FROM token_losses") == 0
    assert count(store, "SELECT count(*) FROM documents") == 7
    assert not list((store_dir / "staging").iterdir()), "a refused job leaves nothing staged"


@pytest.fixture
def sae_args(losses_args, tmp_path):
    from tests.helpers import build_sae

    store_dir, loss_args = losses_args
    quanta(*loss_args)
    sae_dir = build_sae("standard", 32, tmp_path / "sae")
    return store_dir, ["--store", store_dir, "ingest", "sae", "--sae", sae_dir, "--corpus", "toy", "--model", "tiny",
                       "--step", 8, "--no-progress"]


LOCKED_JOBS = {  # job: (its fixture, a table it fills, the message of a re-run that commits the kept run)
    "corpus": ("corpus_args", "documents", "already ingested by run {run_id}"),
    "losses": ("losses_args", "token_losses", "already ingested"),
    "sae": ("sae_args", "sae_features", "already ingested"),
}


@pytest.mark.parametrize("job_name", sorted(LOCKED_JOBS))
def test_a_commit_that_times_out_on_the_lock_is_kept_and_committed_by_a_rerun(job_name, toy_inputs, tmp_path, request):
    fixture, table, rerun_says = LOCKED_JOBS[job_name]
    store_dir, args = request.getfixturevalue(fixture)
    args = args(toy_inputs["corpus"]) if callable(args) else args
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    job = start(barrier, "job", *args, wait_go=True, env={"QUANTA_DB_LOCK_TIMEOUT": "1"})
    run_id = wait_ready(job, barrier, "job")
    with connect(store_dir, read_only=False):  # another process's writer holds the lock
        (barrier / "GO").touch()
        [(rc, out)] = finish(job)
    assert rc == 1 and "is locked" in out and f"run {run_id} is kept staged" in out, out
    assert (store_dir / "staging" / run_id).is_dir()
    rerun = quanta(*args)
    assert rerun_says.format(run_id=run_id) in rerun.output, rerun.output
    store = Store.open(store_dir)
    assert count(store, f"SELECT count(*) FROM {table}") > 0
    assert count(store, f"SELECT count(*) FROM runs WHERE run_id = '{run_id}' AND status = 'committed'") == 1
    assert not (store_dir / "staging" / run_id).exists()


def wait_ready(job, barrier: Path, name: str) -> str:
    while not (barrier / f"{name}.ready").exists():
        assert job.poll() is None, job.stdout.read()
        time.sleep(0.02)  # the job needs the core more than this loop does
    return (barrier / f"{name}.ready").read_text()


def test_gc_keeps_a_live_job_on_another_host_and_removes_a_dead_one(corpus_args, toy_inputs, tmp_path, monkeypatch):
    store_dir, args = corpus_args
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    job = start(barrier, "job", *args(toy_inputs["corpus"]), wait_go=True, host="node-b",
                env={"QUANTA_DB_HEARTBEAT_S": "0.1"})
    run_id = wait_ready(job, barrier, "job")
    dead = store_dir / "staging" / "r20200101000000-deadbeef"
    dead.mkdir()
    (dead / "run.json").write_text('{"host": "node-c", "pid": 1}')
    os.utime(dead / "run.json", (0, 0))
    monkeypatch.setenv("QUANTA_DB_STALE_AFTER_S", "1")
    time.sleep(1.5)  # longer than the threshold: only the heartbeat keeps the live job's staging
    report = Store.open(store_dir).gc()
    assert report.staging_kept == [run_id] and report.staging_removed == [dead.name]
    (barrier / "GO").touch()
    [(rc, out)] = finish(job)
    assert rc == 0 and f"committed run {run_id}" in out, out


def test_a_job_whose_staging_was_removed_fails_in_one_line(corpus_args, toy_inputs, tmp_path, store_snapshot):
    store_dir, args = corpus_args
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    job = start(barrier, "job", *args(toy_inputs["corpus"]), wait_go=True, host="node-b")
    run_id = wait_ready(job, barrier, "job")
    store = Store.open(store_dir)
    before = store_snapshot(store)
    assert store.gc(force=True).staging_removed == [run_id]
    (barrier / "GO").touch()
    [(rc, out)] = finish(job)
    lines = out.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and lines[0].startswith(f"Error: the staged files of run {run_id} were removed")
    assert store_snapshot(store) == before
