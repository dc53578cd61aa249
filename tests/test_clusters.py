"""Quanta discovery: gradients, similarity, clustering, selection — each against a reference."""

import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from sklearn.cluster import SpectralClustering

from quanta_db.cli.main import cli
from quanta_db.demo.toy_models import gpt_neox_config, pythia_config, random_model
from quanta_db.errors import InputError
from quanta_db.results.filters.job import ingest_filters
from quanta_db.results.losses.job import ingest_losses
from quanta_db.results.quanta.gradient_cosine import exact_cosine, gram, sketched_cosine
from quanta_db.results.quanta.gradients import document_gradients, select_parameters, single_token_gradient
from quanta_db.results.quanta.job import gradient_computations, ingest_clusters, ingest_recluster, select_tokens
from quanta_db.results.quanta.spectral import angular_affinity, relabel_by_size, spectral_clusters
from tests.helpers import raw_table as _raw


@pytest.fixture(scope="module")
def tiny():
    model = random_model(gpt_neox_config(300, 32, 2, 4, n_ctx=128), seed=1)
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 300, size=n) for n in (40, 25, 60, 33)]
    tokens = [(0, 3), (0, 17), (0, 39), (1, 1), (1, 24), (2, 10), (2, 11), (2, 59), (3, 5), (3, 32)]
    return model, select_parameters(model), sequences, tokens


def _reference_gradients(model, params, sequences, tokens):
    """One forward and one backward per token, flattened and unit-normalised in float64."""
    g = np.stack([single_token_gradient(model, params, sequences[d], p, "cpu").numpy() for d, p in tokens])
    g = g.astype(np.float64)
    return g / np.linalg.norm(g, axis=1, keepdims=True)


@pytest.mark.slow
def test_parameter_selection_matches_pythia_70m_count():
    params = select_parameters(random_model(pythia_config("pythia-70m")))
    names = [n for n, _ in params]
    assert sum(p.numel() for _, p in params) == 18_903_040
    assert not any("embed_in" in n or "embed_out" in n or "lm_head" in n or "layernorm" in n for n in names)
    assert "gpt_neox.final_layer_norm.weight" in names


def test_batched_gradients_match_single_token_backward(tiny):
    model, params, sequences, _ = tiny
    batched = document_gradients(model, params, sequences[2], [10, 11, 59], "cpu")
    for row, pos in enumerate([10, 11, 59]):
        single = single_token_gradient(model, params, sequences[2], pos, "cpu")
        torch.testing.assert_close(batched[row], single, atol=1e-6, rtol=1e-5)


def test_gradients_batched_across_documents_match_single_token_backward(tiny):
    from quanta_db.results.quanta.gradients import batch_gradients

    model, params, sequences, tokens = tiny  # four documents of 25 to 60 tokens, 1 to 3 tokens each
    documents = {}
    for doc, pos in tokens:
        documents.setdefault(doc, []).append(pos)
    batched = batch_gradients(model, params, [(sequences[d], positions) for d, positions in documents.items()], "cpu")
    assert batched.shape[0] == len(tokens)
    for row, (doc, pos) in enumerate(tokens):
        single = single_token_gradient(model, params, sequences[doc], pos, "cpu")
        torch.testing.assert_close(batched[row], single, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch_tokens", [1, 4, 64])
def test_sketch_and_rows_do_not_depend_on_the_batching(tiny, batch_tokens):
    from quanta_db.results.quanta.gradient_cosine import gradient_rows

    model, params, sequences, tokens = tiny
    rows = gradient_rows(model, params, sequences, tokens, "cpu", batch_tokens=batch_tokens)
    np.testing.assert_allclose(rows.double().numpy(), _reference_gradients(model, params, sequences, tokens), atol=1e-5)
    sketch = sketched_cosine(model, params, sequences, tokens, "cpu", dim=512, seed=0, batch_tokens=batch_tokens)
    np.testing.assert_allclose(sketch, sketched_cosine(model, params, sequences, tokens, "cpu", dim=512, seed=0,
                                                       batch_tokens=1), atol=1e-5)


@pytest.mark.parametrize("block", [100, 3, 1])
def test_exact_similarity_matches_numpy(tiny, block):
    model, params, sequences, tokens = tiny
    reference = _reference_gradients(model, params, sequences, tokens)
    cosine = exact_cosine(model, params, sequences, tokens, "cpu", block_tokens=block)
    np.testing.assert_allclose(cosine, reference @ reference.T, atol=1e-5)


def test_half_precision_storage_error_is_small(tiny):
    model, params, sequences, tokens = tiny
    reference = _reference_gradients(model, params, sequences, tokens)
    cosine = exact_cosine(model, params, sequences, tokens, "cpu", block_tokens=4, storage_dtype=torch.bfloat16)
    assert np.abs(cosine - reference @ reference.T).max() < 5e-3


@pytest.mark.parametrize("chunk_bytes", [4 * 7 * 13, 1 << 28])
def test_half_precision_gram_is_chunked_and_exact_in_float32(chunk_bytes):
    # The upcast temporaries of a bf16 Gram product are bounded (an H100 run of 779-row blocks
    # ran out of memory when a chunk was a fixed 4M columns); chunking must not change the sum.
    rng = torch.Generator().manual_seed(0)
    a = torch.randn(7, 1000, generator=rng).bfloat16()
    b = torch.randn(5, 1000, generator=rng).bfloat16()
    expected = a.double() @ b.double().T
    np.testing.assert_allclose(gram(a, b, chunk_bytes=chunk_bytes).double(), expected, rtol=0, atol=1e-3)


def test_sketch_is_close_and_seeded(tiny):
    model, params, sequences, tokens = tiny
    exact = _reference_gradients(model, params, sequences, tokens)
    exact = exact @ exact.T
    sketch = sketched_cosine(model, params, sequences, tokens, "cpu", dim=8192, seed=0)
    assert np.abs(sketch - exact).max() < 0.05
    np.testing.assert_allclose(np.diag(sketch), 1, atol=1e-6)  # sketched rows are re-normalised
    again = sketched_cosine(model, params, sequences, tokens, "cpu", dim=8192, seed=0)
    np.testing.assert_array_equal(sketch, again)


def test_clustering_matches_sklearn_and_is_reproducible():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(4, 20))
    points = np.concatenate([c + 0.3 * rng.normal(size=(n, 20)) for c, n in zip(centers, (30, 12, 20, 8))])
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    cosine = points @ points.T
    ours = spectral_clusters(cosine, 4, n_init=10, seed=3)
    sk = SpectralClustering(n_clusters=4, affinity="precomputed", assign_labels="kmeans", n_init=10,
                            random_state=3).fit_predict(1 - np.arccos(np.clip(cosine, -1, 1)) / math.pi)
    np.testing.assert_array_equal(ours, relabel_by_size(sk))
    np.testing.assert_array_equal(ours, spectral_clusters(cosine, 4, n_init=10, seed=3))
    sizes = np.bincount(ours)
    assert list(sizes) == sorted(sizes, reverse=True) == [30, 20, 12, 8]


def test_clustering_uses_the_angular_affinity_of_the_matrix_itself():
    """On overlapping groups the affinity matters: ours equals sklearn on 1 - arccos(C)/pi as a
    precomputed affinity, and differs from sklearn's default (an RBF kernel on the rows)."""
    rng = np.random.default_rng(5)
    points = rng.normal(size=(60, 6)) + np.repeat(rng.normal(size=(3, 6)), 20, axis=0) * 0.8
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    cosine = points @ points.T
    ours = spectral_clusters(cosine, 3, n_init=5, seed=0)
    precomputed = SpectralClustering(n_clusters=3, affinity="precomputed", n_init=5, random_state=0).fit_predict(
        1 - np.arccos(np.clip(cosine, -1, 1)) / math.pi)
    rbf_on_rows = SpectralClustering(n_clusters=3, n_init=5, random_state=0).fit_predict(
        1 - np.arccos(np.clip(cosine, -1, 1)) / math.pi)
    np.testing.assert_array_equal(ours, relabel_by_size(precomputed))
    assert not np.array_equal(relabel_by_size(precomputed), relabel_by_size(rbf_on_rows))


def test_affinity_and_relabel():
    assert angular_affinity(np.array([1.0, 0.0, -1.0, 1.0000001, -1.0000001])).tolist() == [1.0, 0.5, 0.0, 1.0, 0.0]
    # off {-1, 0, 1} the angular form 1 - arccos(C)/pi differs from the linear (1 + C)/2
    np.testing.assert_allclose(angular_affinity(np.array([0.5, -0.5, math.sqrt(0.5)])), [2 / 3, 1 / 3, 0.75], atol=1e-12)
    assert relabel_by_size(np.array([5, 2, 2, 7, 7, 7])).tolist() == [2, 1, 1, 0, 0, 0]


def test_gradient_computation_count():
    assert gradient_computations(10, 10) == 10
    assert gradient_computations(10, 5) == 5 + 5 * 2
    assert gradient_computations(9, 4) == 4 + 4 * 2 + 1 * 3


@pytest.fixture
def cluster_store(corpus_store, toy_model):
    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], progress=False)
    ingest_filters(corpus_store, "toy", "trigram", progress=False)
    return corpus_store


def test_selection_follows_the_reference_rule(cluster_store):
    threshold = float(cluster_store.query_df(
        "SELECT quantile_cont(loss_nats, 0.5) AS q FROM token_losses WHERE model = 'tiny'")["q"][0])
    chosen = select_tokens(cluster_store, "tiny", 8, "toy", threshold, "trigram", n_tokens=25, skip=3).to_pandas()
    frame = cluster_store.query_df(
        "SELECT l.doc_id, l.pos, t.canonical_idx, l.loss_nats, f.value FROM token_losses l "
        "JOIN tokens t USING (corpus, doc_id, pos) JOIN token_filters f USING (corpus, doc_id, pos) "
        "WHERE l.model = 'tiny' AND f.filter = 'trigram'")
    expected = frame[(frame.loss_nats < threshold) & ~frame.value.astype(bool)].sort_values("canonical_idx")
    expected = expected.iloc[::3].head(25)
    assert list(zip(chosen.doc_id, chosen.pos)) == list(zip(expected.doc_id, expected.pos))
    unfiltered = select_tokens(cluster_store, "tiny", 8, "toy", threshold, None, 25, 3)
    assert unfiltered.num_rows == 25
    ingest_filters(cluster_store, "toy", "bigram", progress=False)
    alias = select_tokens(cluster_store, "tiny", 8, "toy", threshold, "induction", 25, 3)
    assert alias.equals(select_tokens(cluster_store, "tiny", 8, "toy", threshold, "bigram", 25, 3))


def test_ingest_clusters_end_to_end(cluster_store, toy_model):
    result = ingest_clusters(cluster_store, "tiny", 8, "toy", loss_below=6.0, n_tokens=40, skip=2, n_clusters=4,
                             n_init=4, seed=0, progress=False)
    run_id = result.run_id
    labels = cluster_store.query_df(f"SELECT * FROM cluster_labels WHERE clustering = '{run_id}'")
    assert len(labels) == 40 and set(labels.cluster) == {0, 1, 2, 3}
    sizes = cluster_store.query_df(f"SELECT n_tokens FROM cluster_sizes WHERE clustering = '{run_id}' ORDER BY cluster")
    assert list(sizes.n_tokens) == sorted(sizes.n_tokens, reverse=True)
    matrix = np.asarray(cluster_store.artifact(run_id, "similarity"))
    assert matrix.shape == (40, 40) and np.allclose(np.diag(matrix), 1, atol=1e-5)
    # the stored labels are sklearn's clustering of the stored matrix
    expected = spectral_clusters(matrix, 4, 4, 0)
    stored = cluster_store.query_df(
        f"SELECT s.idx, l.cluster FROM cluster_labels l JOIN similarity_tokens s USING (corpus, doc_id, pos) "
        f"WHERE l.clustering = '{run_id}' AND s.similarity_run = '{run_id}' ORDER BY s.idx")
    np.testing.assert_array_equal(stored.cluster.to_numpy(), expected)
    again = ingest_clusters(cluster_store, "tiny", 8, "toy", loss_below=6.0, n_tokens=40, skip=2, n_clusters=4,
                            n_init=4, seed=0, progress=False)
    assert again.skipped
    recluster = ingest_recluster(cluster_store, run_id, n_clusters=3, n_init=4, seed=0)
    relabelled = cluster_store.query_df(f"SELECT count(DISTINCT cluster) AS k FROM cluster_labels "
                                        f"WHERE clustering = '{recluster.run_id}'")
    assert relabelled.k[0] == 3
    for clustering in (run_id, recluster.run_id):  # a reclustering joins its labels to the original tokens
        _check_cluster_summary(cluster_store, clustering, run_id)
    _check_cluster_tokens(cluster_store, recluster.run_id)
    for command in (["recluster"], ["clusters"]):  # `clusters --from-similarity` is recluster's older spelling
        output = CliRunner().invoke(cli, ["--store", str(cluster_store.root), "ingest", *command, "--from-similarity",
                                          run_id, "--n-clusters", "3", "--n-init", "4"]).output
        assert output == f"skipped: clustering {recluster.run_id} already has these parameters\n"


def _check_cluster_summary(store, clustering, similarity_run):
    """cluster_summary against pandas on the raw labels, chosen tokens, tokens and vocabulary."""
    labels = _raw(store, "cluster_labels")
    labels = labels[labels.clustering == clustering]
    chosen = _raw(store, "similarity_tokens")
    chosen = chosen[chosen.similarity_run == similarity_run]
    merged = labels.merge(chosen, on=["corpus", "doc_id", "pos"]).merge(
        _raw(store, "tokens"), on=["corpus", "doc_id", "pos"]).merge(_raw(store, "vocab"), on="token_id")
    assert len(merged) == len(labels)
    got = store.query_df(f"SELECT * FROM cluster_summary WHERE clustering = '{clustering}'").set_index("cluster")
    for cluster, group in merged.groupby("cluster"):
        assert got.loc[cluster, "n_tokens"] == len(group)
        assert got.loc[cluster, "mean_loss_nats"] == pytest.approx(group.loss_nats.astype("float64").mean(), rel=1e-6)
        counts = group.token.value_counts()
        top = sorted(counts.index, key=lambda t: (-counts[t], t))[:5]
        assert list(got.loc[cluster, "top_answer_tokens"]) == top


def _check_cluster_tokens(store, clustering):
    """cluster_tokens: each token of the cluster with the text of up to 30 preceding tokens."""
    labels = _raw(store, "cluster_labels")
    members = labels[(labels.clustering == clustering) & (labels.cluster == 1)].sort_values(["doc_id", "pos"])
    tokens = _raw(store, "tokens").merge(_raw(store, "vocab"), on="token_id").set_index(["doc_id", "pos"]).token
    got = store.query_df(f"SELECT * FROM cluster_tokens('{clustering}', 1)")
    assert list(zip(got.doc_id, got.pos)) == list(zip(members.doc_id, members.pos))
    for row in got.itertuples():
        assert row.answer == tokens[(row.doc_id, row.pos)]
        assert row.context == "".join(tokens[(row.doc_id, p)] for p in range(max(0, row.pos - 30), row.pos))


def test_force_replaces_a_clustering_and_the_filter_is_a_parameter(cluster_store):
    args = dict(loss_below=6.0, n_tokens=30, skip=2, n_clusters=3, n_init=2, seed=0, progress=False)
    first = ingest_clusters(cluster_store, "tiny", 8, "toy", **args)
    forced = ingest_clusters(cluster_store, "tiny", 8, "toy", force=True, **args)
    assert forced.run_id != first.run_id and forced.dropped.get("cluster_labels") == 30
    kept = cluster_store.query_df("SELECT clustering FROM clusterings")
    assert kept.clustering.tolist() == [forced.run_id]
    assert cluster_store.query_df("SELECT DISTINCT clustering FROM cluster_labels").clustering.tolist() == [forced.run_id]
    filtered = ingest_clusters(cluster_store, "tiny", 8, "toy", exclude_filter="trigram", **args)
    assert not filtered.skipped and filtered.run_id != forced.run_id


def test_cluster_errors(cluster_store):
    with pytest.raises(InputError, match="no token"):
        ingest_clusters(cluster_store, "tiny", 8, "toy", loss_below=0.0, n_clusters=2, progress=False)
    with pytest.raises(InputError, match="no losses"):
        ingest_clusters(cluster_store, "tiny", 4, "toy", progress=False)
    with pytest.raises(InputError, match="no losses of model 'tiny' at step 8 on corpus 'ctx'"):
        ingest_clusters(cluster_store, "tiny", 8, "ctx", progress=False)  # losses exist, on another corpus
    with pytest.raises(InputError, match="was not ingested"):
        ingest_clusters(cluster_store, "tiny", 8, "toy", loss_below=6.0, exclude_filter="bigram", progress=False)
    with pytest.raises(InputError, match="made no similarity"):
        ingest_recluster(cluster_store, "r-nope")


def test_interrupted_exact_similarity_resumes(tiny, tmp_path):
    model, params, sequences, tokens = tiny
    full = exact_cosine(model, params, sequences, tokens, "cpu", block_tokens=3)
    computed = {"n": 0}

    def crash_in_third_block_row(k):
        computed["n"] += k
        if computed["n"] > 3 + 3 + 3 + 1 + 3 + 3 + 1:  # block rows 0 and 1 done (blocks: 3, 3, 3, 1)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        exact_cosine(model, params, sequences, tokens, "cpu", block_tokens=3, on_row=crash_in_third_block_row,
                     resume_dir=tmp_path / "resume")
    resumed_count = {"n": 0}
    resumed = exact_cosine(model, params, sequences, tokens, "cpu", block_tokens=3,
                           on_row=lambda k: resumed_count.update(n=resumed_count["n"] + k),
                           resume_dir=tmp_path / "resume")
    np.testing.assert_allclose(resumed, full, atol=1e-6)
    assert resumed_count["n"] == 3 + 1 + 1  # only block rows 2 and 3 were computed again
