"""`quanta-db slurm ingest` against a real single-node SLURM that these tests start (no mocked sbatch):
a losses split as a job array plus a dependent commit job; a cancelled shard is resubmitted with the
one line `status` prints, and the split then equals the unsplit run."""

import os
import subprocess

import pytest
from click.testing import CliRunner

from quanta_db.cli.main import cli
from tests import slurm_cluster
from tests.test_scaleout import _assert_same_as_unsplit


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = slurm_cluster.missing()
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("slurm")
    env = slurm_cluster.start(folder)
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env
    slurm_cluster.stop(folder)
    for key, value in previous.items():
        os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)


def _submit(store, toy_model, *extra, shards: int = 3):
    return CliRunner().invoke(cli, ["--store", str(store.root), "slurm", "ingest", "losses", "--model",
                                    str(toy_model["dir"]), "--corpus", "toy", "--name", "split", "--steps", "0,4",
                                    "--shards", str(shards), *extra])


def test_dry_run_prints_both_scripts_and_submits_nothing(corpus_store, toy_model, store_snapshot):
    before = store_snapshot(corpus_store)
    result = _submit(corpus_store, toy_model, "--max-parallel", "2", "--time", "1:00:00", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "#SBATCH --array=0-2%2" in result.output and "#SBATCH --gres=gpu:1" in result.output
    assert '--shard "${SLURM_ARRAY_TASK_ID}/3"' in result.output and "--stage-only" in result.output
    assert "#SBATCH --time=1:00:00" in result.output and "SLURM_ARRAY_TASK_COUNT" not in result.output.split("---")[-1]
    assert "commit --split split-" in result.output and "--expect 3" in result.output
    assert store_snapshot(corpus_store) == before and not list(corpus_store.root.glob("staging/split-*"))


def test_without_sbatch_it_is_one_line(corpus_store, toy_model, monkeypatch, store_snapshot):
    monkeypatch.setenv("PATH", "/nonexistent")
    before = store_snapshot(corpus_store)
    result = _submit(corpus_store, toy_model)
    assert result.exit_code != 0 and "needs SLURM's sbatch on PATH" in result.output
    assert len(result.output.strip().splitlines()) == 1 and store_snapshot(corpus_store) == before


def test_an_unreachable_slurm_is_one_line_and_leaves_nothing(corpus_store, toy_model, monkeypatch, store_snapshot,
                                                             tmp_path):
    if slurm_cluster.missing():
        pytest.skip(slurm_cluster.missing())
    (tmp_path / "slurm.conf").write_text("ClusterName=nowhere\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort=1\n")
    monkeypatch.setenv("SLURM_CONF", str(tmp_path / "slurm.conf"))
    before = store_snapshot(corpus_store)
    result = _submit(corpus_store, toy_model)
    assert result.exit_code != 0 and "sbatch refused the job:" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and store_snapshot(corpus_store) == before
    assert not list(corpus_store.root.glob("staging/split-*"))


def test_a_split_on_slurm_with_a_cancelled_shard_is_resubmitted_and_commits(slurm, corpus_store, toy_model):
    result = _submit(corpus_store, toy_model, "--max-parallel", "1", "--no-progress", shards=2)
    assert result.exit_code == 0, result.output
    words = result.output.split()
    split, shards_job, commit_job = words[2].rstrip(":"), words[5], words[11]
    subprocess.run(["scancel", f"{shards_job}_1"], check=True)  # as if index 1 were preempted
    slurm_cluster.wait_for([shards_job, commit_job], slurm)
    assert corpus_store.split_runs(split) == []  # the commit job never ran
    status = CliRunner().invoke(cli, ["--store", str(corpus_store.root), "status"])
    assert f"split {split} (losses): 1 of 2 shard(s) staged" in status.output, status.output
    line = next(x for x in status.output.splitlines() if "sbatch --parsable --array=1 " in x)
    resubmit = line.split(": ", 1)[1]
    done = subprocess.run(["bash", "-c", resubmit], capture_output=True, text=True, check=True)
    slurm_cluster.wait_for([done.stdout.split()[-1]], slurm)  # the new commit job, which waits for the shard
    assert len(corpus_store.split_runs(split)) == 2, [(p.name, p.read_text()[-500:]) for p in corpus_store.root.rglob("*.out")]
    _assert_same_as_unsplit(corpus_store, toy_model, "split")
