"""Loss analyses (saved queries) against pandas on the raw Parquet files."""

import numpy as np
import pytest

from quanta_db.results.corpus.contexts import ingest_contexts
from quanta_db.results.corpus.dm_math import ingest_dm_math
from quanta_db.results.filters.job import ingest_filters
from quanta_db.results.losses.job import ingest_losses
from quanta_db.store.store import Store
from tests.helpers import fresh_store, ingest_toy_corpus
from tests.helpers import raw_table as _raw


@pytest.fixture
def analysed(tmp_path, catalog_backend, _store_templates, toy_model, toy_inputs):
    """The toy corpus, DM mathematics, contexts, trigram filters and two models' losses (built once
    a session and copied for each test, on a local catalog)."""
    def build(root):
        store = ingest_toy_corpus(Store.init(root), toy_inputs)
        folder = root.parent / f"{root.name}-dm"
        folder.mkdir()
        (folder / "arithmetic__add.txt").write_text("".join(f"What is {i} + {i}?\n{2 * i}\n" for i in range(12)))
        ingest_dm_math(store, "dm", str(toy_inputs["tokenizer"]), per_category=6, source=folder, few_shot_tokens=200)
        ingest_contexts(store, "toy", "ctx", per_subset=4, length=24, seed=0)
        ingest_filters(store, "toy", "trigram", progress=False)
        for corpus in ("toy", "dm_zero_shot", "dm_few_shot"):
            ingest_losses(store, str(toy_model["dir"]), corpus, name="tiny", progress=False)
        ingest_losses(store, str(toy_model["dir"]), "toy", name="tiny_b", steps=[8], dtype="bfloat16", progress=False)
        return store

    return fresh_store(_store_templates, "loss_views", tmp_path / "store", catalog_backend, build)


def test_stepwise_difference(analysed):
    losses = _raw(analysed, "token_losses")
    toy = losses[(losses.model == "tiny") & (losses.corpus == "toy")].pivot_table(
        index=["doc_id", "pos"], columns="step", values="loss_nats")
    got = analysed.query_df("SELECT * FROM stepwise_difference WHERE model = 'tiny' AND corpus = 'toy'")
    assert set(zip(got.prev_step, got.step)) == {(0, 4), (4, 8)}
    assert len(got) == 2 * len(toy)
    got = got.set_index(["doc_id", "pos", "step"])["diff_nats"]
    for prev, step in ((0, 4), (4, 8)):
        expected = (toy[step] - toy[prev]).rename("diff_nats")
        ours = got.xs(step, level="step").reindex(expected.index)
        np.testing.assert_allclose(ours.to_numpy(), expected.to_numpy(), atol=1e-6)


def test_model_difference(analysed):
    losses = _raw(analysed, "token_losses")
    a = losses[(losses.model == "tiny") & (losses.step == 8) & (losses.corpus == "toy")].set_index(["doc_id", "pos"])
    b = losses[(losses.model == "tiny_b") & (losses.step == 8)].set_index(["doc_id", "pos"])
    got = analysed.query_df("SELECT * FROM model_difference('tiny', 'tiny_b')").set_index(["doc_id", "pos"])
    assert len(got) == len(b) and set(got.step) == {8}
    expected = (a.loss_nats - b.loss_nats).reindex(got.index)
    np.testing.assert_allclose(got.diff_nats.to_numpy(), expected.to_numpy(), atol=1e-6)


def _aligned_losses(store):
    """Each aligned few-shot token with its loss (few) and its zero-shot twin's (zero), in pandas."""
    losses = _raw(store, "token_losses")
    align = _raw(store, "token_alignments")
    few = losses[losses.corpus == "dm_few_shot"].rename(columns={"loss_nats": "few"})
    zero = losses[losses.corpus == "dm_zero_shot"].rename(columns={"loss_nats": "zero", "doc_id": "ref_doc_id",
                                                                   "pos": "ref_pos"})
    return align.merge(few, on=["doc_id", "pos"]).merge(zero, on=["model", "step", "ref_doc_id", "ref_pos"])


def test_prompting_difference(analysed):
    expected = _aligned_losses(analysed)
    got = analysed.query_df("SELECT * FROM prompting_difference")
    assert len(got) == len(expected) > 0
    merged = got.merge(expected, left_on=["model", "step", "problem_id", "pos"],
                       right_on=["model", "step", "ref_doc_id", "ref_pos"])
    np.testing.assert_allclose(merged.diff_nats, merged.few - merged.zero, atol=1e-6)


def test_low_loss_tokens_excludes_filter(analysed):
    losses = _raw(analysed, "token_losses")
    filters = _raw(analysed, "token_filters")
    threshold = float(losses[(losses.corpus == "toy") & (losses.step == 8)].loss_nats.quantile(0.2))
    toy = losses[(losses.model == "tiny") & (losses.step == 8) & (losses.corpus == "toy")]
    merged = toy.merge(filters[filters["filter"] == "trigram"], on=["corpus", "doc_id", "pos"])
    expected = merged[(merged.loss_nats < threshold) & ~merged.value]
    got = analysed.query_df(f"SELECT * FROM low_loss_tokens('tiny', 8, threshold := {threshold}) WHERE corpus = 'toy'")
    assert len(got) == len(expected) > 0
    assert got.canonical_idx.is_monotonic_increasing
    everything = analysed.query_df(
        f"SELECT * FROM low_loss_tokens('tiny', 8, threshold := {threshold}, exclude_filter := NULL) WHERE corpus = 'toy'")
    assert len(everything) == (toy.loss_nats < threshold).sum() > len(got)


def test_loss_trajectory_matches_pandas_pivot(analysed):
    losses = _raw(analysed, "token_losses")
    toy = losses[(losses.model == "tiny") & (losses.corpus == "toy")]
    pivot = toy.pivot_table(index=["doc_id", "pos"], columns="step", values="loss_nats")
    got = analysed.query_df("SELECT * FROM loss_trajectory WHERE model = 'tiny' AND corpus = 'toy'")
    assert len(got) == len(pivot)
    assert all(list(s) == [0, 4, 8] for s in got.steps)
    got = got.set_index(["doc_id", "pos"]).reindex(pivot.index)
    np.testing.assert_allclose(np.stack(got.losses_nats.to_numpy()), pivot[[0, 4, 8]].to_numpy(), atol=0)


def test_loss_curve_matches_pandas(analysed):
    losses = _raw(analysed, "token_losses")
    expected = losses.groupby(["model", "corpus", "step"]).loss_nats.agg(["size", "mean"])
    got = analysed.query_df("SELECT * FROM loss_curve").set_index(["model", "corpus", "step"])
    assert list(got.index) == sorted(expected.index)  # ordered by model, corpus, step
    got = got.reindex(expected.index)
    assert (got.n_tokens.to_numpy() == expected["size"].to_numpy()).all()
    np.testing.assert_allclose(got.mean_loss_nats.to_numpy(), expected["mean"].to_numpy(), rtol=1e-6)


def test_prompting_summary_matches_pandas(analysed):
    pairs = _aligned_losses(analysed)
    pairs["diff"] = pairs.few.astype("float64") - pairs.zero.astype("float64")
    expected = pairs.groupby(["model", "step"]).agg(n=("diff", "size"), zero=("zero", "mean"), few=("few", "mean"),
                                                    diff=("diff", "mean"))
    got = analysed.query_df("SELECT * FROM prompting_summary").set_index(["model", "step"]).reindex(expected.index)
    assert set(got.few_shot_corpus) == {"dm_few_shot"}
    assert (got.n_tokens.to_numpy() == expected.n.to_numpy()).all()
    for ours, theirs in (("zero_shot_loss_nats", "zero"), ("few_shot_loss_nats", "few"), ("mean_diff_nats", "diff")):
        np.testing.assert_allclose(got[ours].to_numpy(), expected[theirs].to_numpy(), rtol=1e-5, atol=1e-6)


def test_subset_means(analysed):
    losses = _raw(analysed, "token_losses")
    docs = _raw(analysed, "documents")
    merged = losses[losses.corpus == "toy"].merge(docs[["corpus", "doc_id", "subset"]], on=["corpus", "doc_id"])
    expected = merged.groupby(["model", "step", "subset"]).loss_nats.mean()
    got = analysed.query_df("SELECT * FROM loss_by_subset_and_step WHERE corpus = 'toy'").set_index(
        ["model", "step", "subset"]).mean_loss_nats
    np.testing.assert_allclose(got.reindex(expected.index).to_numpy(), expected.to_numpy(), rtol=1e-5)


def test_replacing_a_corpus_drops_what_was_computed_on_it(analysed, toy_inputs):
    from quanta_db.results.corpus.job import ingest_corpus

    ingest_corpus(analysed, toy_inputs["corpus"], "toy", str(toy_inputs["tokenizer"]), max_tokens=16, force=True,
                  progress=False)
    left = analysed.query_df("SELECT corpus, count(*) AS n FROM token_losses GROUP BY corpus")
    assert "toy" not in set(left.corpus)
    assert analysed.query_df("SELECT count(*) AS n FROM token_filters WHERE corpus = 'toy'")["n"][0] == 0
