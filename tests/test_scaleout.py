"""Splits of a real job: losses in shards equal the unsplit run, staged by hand or as Ray tasks on
a local Ray cluster with logical GPUs."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from quanta_db.cli.main import cli
from quanta_db.errors import InputError, QuantaError
from quanta_db.results.losses.job import ingest_losses, loss_plan
from quanta_db.results.losses.params import LossParams

REPOSITORY = Path(__file__).resolve().parent.parent
LOSS_COLUMNS = "step, corpus, doc_id, pos, loss_nats"


def _losses(store, model: str):
    return store.query_df(f"SELECT {LOSS_COLUMNS} FROM token_losses WHERE model = ? ORDER BY step, doc_id, pos",
                          [model])


def _checkpoints(store, model: str):
    return store.query_df("SELECT * EXCLUDE (model) FROM checkpoints WHERE model = ? ORDER BY step", [model])


def _params(toy_model, name: str, **extra) -> LossParams:
    return LossParams(source=str(toy_model["dir"]), corpus="toy", name=name, steps=(0, 4), progress=False, **extra)


# A shard batches its own documents, so the model sees other batch shapes than in the unsplit run:
# BLAS may then round differently in the last bit of float32 (9.5e-7 nats at most, measured on a
# pythia-70m shape). Every other column is compared exactly.
LOSS_ROUNDING_NATS = 1e-5


def _assert_same_as_unsplit(store, toy_model, name: str) -> None:
    ingest_losses(store, _params(toy_model, "whole"))
    whole, split = _losses(store, "whole"), _losses(store, name)
    assert len(whole) > 0 and split.drop(columns="loss_nats").equals(whole.drop(columns="loss_nats"))
    assert np.allclose(split.loss_nats, whole.loss_nats, rtol=0, atol=LOSS_ROUNDING_NATS)
    assert _checkpoints(store, name).drop(columns=["run_id"], errors="ignore").equals(
        _checkpoints(store, "whole").drop(columns=["run_id"], errors="ignore"))


def test_a_losses_split_into_3_equals_the_unsplit_run(corpus_store, toy_model, store_snapshot):
    plan = loss_plan(_params(toy_model, "split"), 3)
    assert plan.describe() == ["shard 0/3: step 0, documents 0/2", "shard 1/3: step 0, documents 1/2",
                               "shard 2/3: step 4, documents 0/2", "shard 0/3: step 4, documents 1/2"]
    before = store_snapshot(corpus_store)
    for i in range(3):
        ingest_losses(corpus_store, _params(toy_model, "split", shard=(i, 3), stage_only=True))
    assert store_snapshot(corpus_store) == before  # staged, not committed
    done = corpus_store.commit_split(plan.split, expect=3)
    assert len(done.runs) == 4 and done.rows_written == len(_losses(corpus_store, "split"))
    _assert_same_as_unsplit(corpus_store, toy_model, "split")


def test_the_cli_plans_stages_lists_and_commits_a_split(corpus_store, toy_model):
    runner = CliRunner()
    base = ["--store", str(corpus_store.root), "ingest", "losses", "--model", str(toy_model["dir"]), "--corpus", "toy",
            "--name", "split", "--steps", "0,4", "--no-progress"]
    planned = runner.invoke(cli, [*base, "--shards", "2", "--plan"])
    assert planned.exit_code == 0, planned.output
    split = planned.output.split()[1].rstrip(":")
    assert "shard 1/2: step 4" in planned.output and split.startswith("split-")
    staged = runner.invoke(cli, [*base, "--shard", "0/2", "--stage-only"])
    assert staged.exit_code == 0 and f"staged for split {split} (shard 0/2)" in staged.output, staged.output
    status = runner.invoke(cli, ["--store", str(corpus_store.root), "status"])
    assert f"split {split} (losses): 1 of 2 shard(s) staged" in status.output
    assert re.search(r"ingest losses .*--shard 1/2 .*--stage-only && quanta-db --store \S+ commit --split", status.output)
    refused = runner.invoke(cli, ["--store", str(corpus_store.root), "commit", "--split", split])
    assert refused.exit_code != 0 and "lacks shard(s) 1 of 2" in refused.output
    assert runner.invoke(cli, [*base, "--shard", "1/2", "--stage-only"]).exit_code == 0
    committed = runner.invoke(cli, ["--store", str(corpus_store.root), "commit", "--split", split, "--expect", "2"])
    assert committed.exit_code == 0 and f"committed split {split}: 2 run(s)" in committed.output, committed.output
    _assert_same_as_unsplit(corpus_store, toy_model, "split")
    again = runner.invoke(cli, ["--store", str(corpus_store.root), "commit", "--split", split])
    assert again.exit_code != 0 and "already committed" in again.output


@pytest.mark.parametrize(("args", "message"), [
    (["--shards", "0", "--plan"], "--shards must be at least 1"),
    (["--plan"], "--plan and --executor need --shards N"),
    (["--shard", "3/3"], "--shard 3/3: need 0 <= i < n"),
    (["--executor", "ray", "--shards", "2", "--shard", "0/2"], "drop --shard and --stage-only"),
])
def test_bad_split_options_are_one_line(corpus_store, toy_model, args, message):
    result = CliRunner().invoke(cli, ["--store", str(corpus_store.root), "ingest", "losses", "--model",
                                      str(toy_model["dir"]), "--corpus", "toy", *args])
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster with two logical GPUs; workers import tests/ like the driver."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPOSITORY), "QUANTA_DB_TEST_CACHE": ""}})
    yield ray
    ray.shutdown()


def test_a_split_on_ray_equals_the_unsplit_run_and_survives_a_dying_worker(ray_cluster, corpus_store, toy_model):
    from quanta_db.scaleout import ray_executor

    params = _params(toy_model, "split")
    plan = loss_plan(params, 3)
    done = ray_executor.run_split(corpus_store, "tests.scaleout_jobs:losses_dying_once", "losses", params, plan,
                                  progress=False)
    assert (corpus_store.root.parent / "shard-1-died").exists()  # shard 1's first worker died; its retry staged
    seen = [line.split() for line in (corpus_store.root.parent / "visible-gpus").read_text().splitlines()]
    assert sorted(int(shard) for shard, _ in seen) == [0, 1, 1, 2]  # shard 1 twice: its retry
    assert {gpu for _, gpu in seen} <= {"0", "1"}  # one logical GPU each (num_gpus=1), as Ray assigns them
    assert len(done.runs) == 4
    _assert_same_as_unsplit(corpus_store, toy_model, "split")


def test_a_shard_that_always_fails_on_ray_commits_nothing(ray_cluster, corpus_store, toy_model, store_snapshot):
    from quanta_db.scaleout import ray_executor

    params = _params(toy_model, "split")
    plan = loss_plan(params, 3)
    before = store_snapshot(corpus_store)
    with pytest.raises(QuantaError, match=r"shard 2/3 of split .* failed \(shard 2 always fails") as error:
        ray_executor.run_split(corpus_store, "tests.scaleout_jobs:losses_failing_shard_2", "losses", params, plan,
                               progress=False)
    assert re.search(r"ingest losses .*--shard 2/3 .*--stage-only && quanta-db --store", str(error.value))
    assert store_snapshot(corpus_store) == before
    [state] = corpus_store.status()["staged_splits"]
    assert state.missing == [2]


def test_an_unreachable_ray_cluster_is_one_line_and_changes_nothing(corpus_store, toy_model, store_snapshot):
    before = store_snapshot(corpus_store)
    result = CliRunner().invoke(cli, ["--store", str(corpus_store.root), "ingest", "losses", "--model",
                                      str(toy_model["dir"]), "--corpus", "toy", "--executor", "ray", "--shards", "2",
                                      "--ray-address", "127.0.0.1:1"])
    assert result.exit_code != 0 and "cannot reach a Ray cluster at 127.0.0.1:1" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert store_snapshot(corpus_store) == before


def test_a_heads_split_into_3_equals_the_unsplit_run(corpus_store, toy_model, store_snapshot):
    from quanta_db.results.heads.job import heads_plan, ingest_heads
    from quanta_db.results.heads.params import HeadParams

    def params(name, **extra):
        return HeadParams(str(toy_model["dir"]), "toy", name=name, step=8, max_docs=7, induction_length=8,
                          progress=False, **extra)

    plan = heads_plan(params("split"), 3)
    assert plan.describe()[0] == "shard 0/3: documents 0/3 and the per-head scores"
    before = store_snapshot(corpus_store)
    for i in (2, 0, 1):  # in any order
        ingest_heads(corpus_store, params("split", shard=(i, 3), stage_only=True))
    assert store_snapshot(corpus_store) == before
    assert len(corpus_store.commit_split(plan.split, expect=3).runs) == 3
    ingest_heads(corpus_store, params("whole"))
    columns = "step, corpus, doc_id, pos, layer, head"
    order = "ORDER BY doc_id, pos, layer, head"

    def rows(table, name, what=columns):
        return corpus_store.query_df(f"SELECT {what} FROM {table} WHERE model = ? "
                                     + (order if table == "head_token_metrics" else "ORDER BY layer, head"), [name])

    assert len(rows("head_token_metrics", "whole")) > 0
    assert rows("head_token_metrics", "split").equals(rows("head_token_metrics", "whole"))
    metrics = "dla, mover_attn, mover_dla"
    split, whole = rows("head_token_metrics", "split", metrics), rows("head_token_metrics", "whole", metrics)
    assert np.allclose(split.values, whole.values, rtol=1e-5, atol=1e-6)  # other batch shapes: float32 rounding
    scores = "* EXCLUDE (model)"
    assert rows("head_scores", "split", scores).equals(rows("head_scores", "whole", scores))


def test_without_ray_installed_it_is_one_line(corpus_store, toy_model, monkeypatch, store_snapshot):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails, as where it is not installed
    before = store_snapshot(corpus_store)
    result = CliRunner().invoke(cli, ["--store", str(corpus_store.root), "ingest", "losses", "--model",
                                      str(toy_model["dir"]), "--corpus", "toy", "--executor", "ray", "--shards", "2"])
    assert result.exit_code != 0 and "needs Ray: pip install 'quanta-db[ray]'" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and store_snapshot(corpus_store) == before


def _same_rows(store, table: str, a: str, b: str, order: str, loose: tuple = (), skip: tuple = (),
               rtol: float = 1e-9) -> None:
    """Rows of ``table`` for SAE ``a`` and ``b``: equal in every column, those in ``loose`` within
    ``rtol`` (float64 rounding of sums taken in another order)."""
    def rows(name):
        frame = store.query_df(f"SELECT * EXCLUDE (sae) FROM {table} WHERE sae = ? ORDER BY {order}", [name])
        return frame.drop(columns=[c for c in ("run_id", *skip) if c in frame.columns])
    ours, theirs = rows(a), rows(b)
    assert len(theirs) > 0 and list(ours.columns) == list(theirs.columns)
    exact = [c for c in ours.columns if c not in loose]
    diff = ours[exact].compare(theirs[exact]) if ours[exact].shape == theirs[exact].shape else "shapes"
    assert ours[exact].equals(theirs[exact]), (table, diff)
    for column in loose:
        np.testing.assert_allclose(ours[column].astype(float), theirs[column].astype(float), rtol=rtol, err_msg=column)


def test_an_sae_split_into_3_merges_into_the_unsplit_run(corpus_store, toy_model, tmp_path, store_snapshot):
    from quanta_db.results.sae.job import ingest_sae, sae_plan
    from quanta_db.results.sae.params import SaeParams
    from tests.helpers import build_sae

    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], progress=False)
    sae_dir = build_sae("topk", 32, tmp_path / "topk")

    def params(name, **extra):
        return SaeParams(str(sae_dir), "toy", "tiny", step=8, name=name, top_k=4, ce_tokens=600, progress=False,
                         **extra)

    plan = sae_plan(params("split"), 3)
    before = store_snapshot(corpus_store)
    for i in (1, 2, 0):
        ingest_sae(corpus_store, params("split", shard=(i, 3), stage_only=True))
    assert store_snapshot(corpus_store) == before
    done = corpus_store.commit_split(plan.split, expect=3)
    assert len(done.runs) == 1 and not list((corpus_store.root / "staging").glob("r*"))  # one run; shards gone
    ingest_sae(corpus_store, params("whole"))
    _same_rows(corpus_store, "sae_features", "split", "whole", "feature", loose=("mean_act", "mean_act_active"))
    _same_rows(corpus_store, "feature_histograms", "split", "whole", "feature, bin")
    _same_rows(corpus_store, "feature_examples", "split", "whole", "feature, kind, rank")
    _same_rows(corpus_store, "feature_logits", "split", "whole", "feature, direction, rank")
    metrics = corpus_store.query_df("SELECT * FROM sae_metrics WHERE sae = 'whole'").columns
    sums = [c for c in metrics if c.startswith(("sum_", "l", "mse", "explained", "cos", "density", "dead",
                                                "alive", "gini", "freq", "dec_"))
            and c not in ("explained_variance_legacy", "sum_x")]
    # legacy EV is centred per batch (as sae-lens does): it depends on the batches, split or not; the
    # CE losses come from the model's float32 forwards on other batch shapes (see LOSS_ROUNDING_NATS)
    _same_rows(corpus_store, "sae_metrics", "split", "whole", "corpus", loose=tuple(sums),
               skip=("explained_variance_legacy", "sum_x", "ce_loss_clean", "ce_loss_sae", "ce_loss_zero",
                     "ce_loss_score"))
    _same_rows(corpus_store, "sae_metrics", "split", "whole", "corpus", rtol=1e-5,
               loose=("ce_loss_clean", "ce_loss_sae", "ce_loss_zero", "ce_loss_score"),
               skip=tuple(c for c in metrics if c not in ("corpus", "sae") and not c.startswith("ce_")))
    sum_x = corpus_store.query_df("SELECT sae, sum_x FROM sae_metrics ORDER BY sae")
    np.testing.assert_allclose(np.stack(sum_x.sum_x[0]), np.stack(sum_x.sum_x[1]), rtol=1e-9)


def test_an_sae_split_on_ray_merges_at_the_commit(ray_cluster, corpus_store, toy_model, tmp_path):
    from quanta_db.results.sae.job import sae_plan
    from quanta_db.results.sae.params import SaeParams
    from quanta_db.scaleout import ray_executor
    from tests.helpers import build_sae

    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], progress=False)
    params = SaeParams(str(build_sae("standard", 32, tmp_path / "standard")), "toy", "tiny", step=8, progress=False)
    done = ray_executor.run_split(corpus_store, "quanta_db.results.sae.job:ingest_sae", "sae", params,
                                  sae_plan(params, 2), progress=False)
    assert len(done.runs) == 1
    n_tokens = corpus_store.query_df("SELECT count(*) AS n FROM tokens")["n"][0]
    assert corpus_store.query_df("SELECT n_tokens FROM sae_metrics")["n_tokens"].tolist() == [n_tokens]


def _split_by_hand(store, job, plan_of, params, shards: int, store_snapshot) -> list[str]:
    """Stage every shard of ``params``'s split, check that none of it shows, commit it; its runs."""
    plan = plan_of(params, shards)
    before = store_snapshot(store)
    for i in range(shards):
        job(store, dataclasses.replace(params, shard=(i, shards), stage_only=True))
    assert store_snapshot(store) == before
    return store.commit_split(plan.split, expect=shards).runs


def test_a_feature_pairs_split_into_3_equals_the_unsplit_pairing(corpus_store, toy_model, tmp_path, store_snapshot):
    from quanta_db.results.sae.job import ingest_sae
    from quanta_db.results.universality.job import feature_pairs_plan, ingest_feature_pairs
    from quanta_db.results.universality.params import FeaturePairParams
    from tests.helpers import build_sae

    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], progress=False)
    for name, architecture in (("a", "standard"), ("b", "topk")):
        ingest_sae(corpus_store, str(build_sae(architecture, 32, tmp_path / name)), "toy", "tiny", step=8, name=name,
                   progress=False)
    params = FeaturePairParams("a", "b", "toy", n_tokens=None, top_k=3, progress=False)
    [split_run] = _split_by_hand(corpus_store, ingest_feature_pairs, feature_pairs_plan, params, 3, store_snapshot)
    whole = ingest_feature_pairs(corpus_store, dataclasses.replace(params, force=True)).run_id
    np.testing.assert_allclose(np.asarray(corpus_store.artifact(split_run, "correlation")),
                               np.asarray(corpus_store.artifact(whole, "correlation")), rtol=1e-5, atol=1e-6)

    def pairs(run):
        return corpus_store.query_df("SELECT * EXCLUDE (pairing) FROM feature_pairs WHERE pairing = ? "
                                     "ORDER BY side, feature_a, feature_b", [run])
    ours, theirs = pairs(split_run), pairs(whole)
    assert len(theirs) > 0 and ours.drop(columns="corr").equals(theirs.drop(columns="corr"))
    np.testing.assert_allclose(ours["corr"], theirs["corr"], rtol=1e-5, atol=1e-6)


def test_a_sketched_clustering_split_into_3_equals_the_unsplit_one(corpus_store, toy_model, store_snapshot):
    from quanta_db.results.quanta.job import clusters_plan, ingest_clusters
    from quanta_db.results.quanta.params import ClusterParams

    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], progress=False)
    params = ClusterParams("tiny", 8, "toy", loss_below=6.0, n_tokens=30, skip=2, n_clusters=3, n_init=4, sketch=64,
                           progress=False)
    with pytest.raises(InputError, match="--sketch DIM"):
        dataclasses.replace(params, sketch=None, shard=(0, 2))
    [split_run] = _split_by_hand(corpus_store, ingest_clusters, clusters_plan, params, 3, store_snapshot)

    def labels(run):
        return corpus_store.query_df("SELECT doc_id, pos, cluster FROM cluster_labels WHERE clustering = ? "
                                     "ORDER BY doc_id, pos", [run])
    split_labels, split_matrix = labels(split_run), np.array(corpus_store.artifact(split_run, "similarity"))
    whole = ingest_clusters(corpus_store, dataclasses.replace(params, force=True)).run_id  # replaces the split's
    np.testing.assert_allclose(split_matrix, np.asarray(corpus_store.artifact(whole, "similarity")), rtol=1e-5,
                               atol=1e-6)
    assert len(split_labels) == 30 and split_labels.equals(labels(whole))
