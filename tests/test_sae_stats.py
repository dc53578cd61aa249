"""Streaming SAE statistics against direct numpy computations and sae-lens's own calculator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quanta_db.results.sae.stats import (
    HISTOGRAM_EDGES,
    FeatureStatistics,
    decoder_geometry,
    gini,
    merge_largest,
    row_chunks,
)


@pytest.fixture(scope="module")
def batches():
    rng = np.random.default_rng(0)
    n, d_in, d_sae = 600, 12, 40
    x = rng.normal(size=(n, d_in)).astype(np.float32) + 0.5
    pre = rng.normal(size=(n, d_sae)).astype(np.float32) - 1.5 + 0.1 * np.arange(d_sae) / d_sae
    feats = np.maximum(pre, 0)
    feats[:, [3, 17]] = 0  # dead features
    x_hat = (x + 0.3 * rng.normal(size=x.shape)).astype(np.float32)
    return x, feats, x_hat


def _stream(batches, batch=97, **kwargs):
    x, feats, x_hat = batches
    stats = FeatureStatistics(feats.shape[1], "cpu", **kwargs)
    for start in range(0, len(x), batch):
        sl = slice(start, start + batch)
        stats.add(torch.from_numpy(x[sl]), torch.from_numpy(feats[sl]), torch.from_numpy(x_hat[sl]),
                  torch.arange(start, min(start + batch, len(x))))
    return stats


def test_feature_columns_match_numpy(batches):
    _, feats, _ = batches
    got = _stream(batches).feature_columns()
    active = feats != 0
    np.testing.assert_array_equal(got["n_active"], active.sum(0))
    np.testing.assert_allclose(got["density"], active.mean(0))
    np.testing.assert_allclose(got["mean_act"], feats.mean(0), rtol=1e-6)
    with np.errstate(invalid="ignore"):
        expected_active = np.where(active.sum(0) > 0, feats.sum(0) / active.sum(0), 0)
    np.testing.assert_allclose(got["mean_act_active"], expected_active, rtol=1e-6)
    np.testing.assert_allclose(got["max_act"], feats.max(0))
    assert got["dead"].tolist() == (active.sum(0) == 0).tolist() and got["dead"][[3, 17]].all()
    assert (got["n_tokens"] == len(feats)).all()


def _dense_histograms(stats):
    feature, bin_index, count = stats.histograms()
    got = np.zeros((stats.d_sae, len(HISTOGRAM_EDGES) - 1), dtype=np.int64)
    got[feature, bin_index] = count
    return got


def test_histograms_are_exact_counts(batches):
    _, feats, _ = batches
    feature, bin_index, count = _stream(batches).histograms()
    got = np.zeros((feats.shape[1], len(HISTOGRAM_EDGES) - 1), dtype=np.int64)
    got[feature, bin_index] = count
    for f in range(feats.shape[1]):
        values = np.abs(feats[:, f][feats[:, f] != 0])
        expected, _ = np.histogram(np.clip(values, HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1] * 0.999), HISTOGRAM_EDGES)
        np.testing.assert_array_equal(got[f], expected)


def test_values_on_bin_edges_fall_where_numpy_puts_them():
    values = HISTOGRAM_EDGES.astype(np.float32)[None, :].repeat(2, 0)  # every edge, as float32 activations
    stats = FeatureStatistics(values.shape[1], "cpu")
    stats.add(torch.ones(2, 1), torch.from_numpy(values), torch.ones(2, 1), torch.arange(2))
    got = _dense_histograms(stats)
    for f, value in enumerate(values[0]):
        expected, _ = np.histogram(np.clip([value] * 2, HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1] * 0.999),
                                   HISTOGRAM_EDGES)
        np.testing.assert_array_equal(got[f], expected)


def test_row_chunks_bound_the_active_entries():
    feats = torch.zeros(9, 5)
    feats[[0, 1, 1, 3, 4, 4, 4, 4, 8], [0, 0, 1, 2, 0, 1, 2, 3, 4]] = 1.0  # rows hold 1, 2, 0, 1, 4, 0, 0, 0, 1
    chunks = [(c.start, c.stop) for c in row_chunks(feats, max_entries=3)]
    assert chunks == [(0, 3), (3, 4), (4, 5), (5, 9)]  # row 4 alone exceeds the bound


def test_row_chunks_change_nothing(batches):
    """A batch denser than ``max_entries`` is read in row chunks; every statistic is the same."""
    whole, chunked = _stream(batches, batch=100), _stream(batches, batch=100, max_entries=20)
    for name in ("n_active", "sum_act", "top_values", "top_tokens", "sample_keys", "sample_tokens", "sample_values",
                 "histogram"):
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name), rtol=1e-12, atol=0)
    assert chunked.metric_sums().metrics() == pytest.approx(whole.metric_sums().metrics(), rel=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_merge_largest_equals_a_stable_sort_of_old_and_new(seed):
    """Integer keys make ties common: the merge keeps what a descending sort of the row's entries
    and the new ones by key, equal keys by the payload (the token index) ascending, keeps."""
    rng = np.random.default_rng(seed)
    d, width = 7, 4
    table = -np.sort(-rng.integers(0, 6, size=(d, width)).astype(np.float64), axis=1)
    table[rng.random(d) < 0.3, -2:] = -np.inf  # rows not full yet
    payload = np.sort(rng.choice(2 * 10**3, size=(d, width), replace=False), axis=1)  # ties in a row: token order
    n_new = rng.integers(0, 30)
    feature, keys = rng.integers(0, d - 1, n_new), rng.integers(0, 8, n_new).astype(np.float64)
    new_payload = rng.choice(np.setdiff1d(np.arange(2 * 10**3), payload), n_new, replace=False)  # tokens seen once
    got_keys, got_payload = torch.from_numpy(table.copy()), torch.from_numpy(payload.copy())
    merge_largest(got_keys, [got_payload], torch.from_numpy(feature), torch.from_numpy(keys),
                  [torch.from_numpy(new_payload)])
    for f in range(d):
        mine = feature == f
        all_keys = np.r_[table[f], keys[mine]]
        all_payload = np.r_[payload[f], new_payload[mine]]
        order = np.lexsort((all_payload, -all_keys))[:width]
        np.testing.assert_array_equal(got_keys[f].numpy(), all_keys[order])
        np.testing.assert_array_equal(got_payload[f].numpy(), all_payload[order])
    assert (got_keys[d - 1].numpy() == table[d - 1]).all()  # no new entries: row untouched


@pytest.mark.parametrize("kind", ["values", "keys"])
def test_bucket_thinning_keeps_every_possible_survivor(kind):
    from quanta_db.results.sae.stats import _key_bucket, _value_bucket, within_largest

    rng = np.random.default_rng(4)
    d, width, n = 9, 5, 3000
    feature = rng.integers(0, d, n)
    if kind == "values":  # activations over many octaves, some repeated, some negative
        keys = np.round(np.exp(rng.normal(0, 3, n)), 2).astype(np.float32) * np.where(rng.random(n) < 0.05, -1, 1)
        bucket = _value_bucket(torch.from_numpy(keys))
    else:
        keys = rng.random(n)
        bucket = _key_bucket(torch.from_numpy(keys))
    kept = set(within_largest(torch.from_numpy(feature), bucket, width, d).tolist())
    for f in range(d):
        mine = np.flatnonzero(feature == f)
        kth = np.sort(keys[mine])[::-1][width - 1]
        assert set(mine[keys[mine] >= kth]) <= kept  # everything tied with or above the width-th largest
    assert len(kept) < n / 4  # and it does thin


@pytest.mark.parametrize("batch", [97, 600])
def test_top_k_equals_a_full_sort(batches, batch):
    _, feats, _ = batches
    values, tokens = _stream(batches, batch=batch, top_k=3).top_examples()  # 3 x 40 < the candidates: thinned
    for feature in range(feats.shape[1]):
        order = np.argsort(-feats[:, feature], kind="stable")[:3]
        expected = feats[order, feature]
        keep = expected > 0
        np.testing.assert_allclose(values[feature][keep], expected[keep])
        assert set(tokens[feature][keep]) == set(order[keep])
        assert (tokens[feature][~keep] == -1).all()


def _band_examples(stats, n_bands, per_band):
    """(feature, band, token index, activation) tuples of the band examples."""
    arrays = stats.band_example_arrays(n_bands, per_band)
    return list(zip(*(arrays[name].tolist() for name in ("feature", "band", "token", "value"))))


def test_band_examples_are_active_distinct_and_in_their_band(batches):
    _, feats, _ = batches
    stats = _stream(batches, sample_size=50)
    examples = _band_examples(stats, n_bands=10, per_band=3)
    assert examples
    seen = set()
    for feature, band, token, value in examples:
        assert feats[token, feature] == pytest.approx(value) and value > 0
        top = feats[:, feature].max()
        assert band == min(int(value / top * 10), 9)
        assert (feature, token) not in seen
        seen.add((feature, token))
    per_band = {}
    for feature, band, _, _ in examples:
        per_band[(feature, band)] = per_band.get((feature, band), 0) + 1
    assert max(per_band.values()) <= 3
    assert not {f for f, *_ in examples} & {3, 17}


def test_sample_is_the_bottom_k_of_its_token_keys():
    """The streaming reservoir keeps exactly the active tokens with the largest keys, also once
    dense features only admit keys near 1 (features of very different densities)."""
    rng = np.random.default_rng(1)
    n, d_sae, size = 6000, 6, 8
    density = np.array([0.9, 0.5, 0.1, 0.01, 0.002, 0.0])
    feats = (rng.random((n, d_sae)) < density) * rng.random((n, d_sae)).astype(np.float32)
    stats = FeatureStatistics(d_sae, "cpu", sample_size=size, seed=3)
    drawn = []
    keys_of = stats.token_keys
    stats.token_keys = lambda index: drawn.append(keys_of(index)) or drawn[-1]
    for start in range(0, n, 250):
        f = torch.from_numpy(feats[start:start + 250])
        stats.add(torch.ones(len(f), 2), f, torch.ones(len(f), 2), torch.arange(start, start + len(f)))
    keys = torch.cat(drawn).numpy()
    assert stats.sample_keys[:, -1].min() < 0.5 < stats.sample_keys[0, -1]  # several key levels in use
    for feature in range(d_sae):
        active = np.flatnonzero(feats[:, feature])
        expected = active[np.argsort(-keys[active])[:size]]
        kept = stats.sample_tokens[feature].numpy()
        assert set(kept[kept >= 0]) == set(expected)
        np.testing.assert_array_equal(stats.sample_values[feature].numpy()[kept >= 0], feats[kept[kept >= 0], feature])


@pytest.mark.slow
def test_sample_inclusion_is_uniform_over_active_tokens():
    feats = np.zeros((400, 1), np.float32)
    feats[::2, 0] = np.linspace(1, 2, 200)  # 200 active tokens, increasing activation
    hits = np.zeros(400)
    for seed in range(300):
        stats = FeatureStatistics(1, "cpu", sample_size=10, seed=seed)
        for start in range(0, 400, 50):
            f = torch.from_numpy(feats[start:start + 50])
            stats.add(torch.ones(50, 2), f, torch.ones(50, 2), torch.arange(start, start + 50))
        hits[stats.sample_tokens[0].numpy()] += 1
    assert hits[1::2].sum() == 0
    # each active token is kept with probability 10/200: 15 expected hits in 300 runs
    from scipy.stats import chisquare
    assert chisquare(hits[::2]).pvalue > 1e-3


def test_metrics_match_numpy_and_sae_lens(batches):
    from sae_lens.evals import ExplainedVarianceCalculator

    x, feats, x_hat = batches
    got = _stream(batches, batch=100).metric_sums().metrics()
    residual = ((x - x_hat) ** 2).sum(1)
    assert got["mse"] == pytest.approx(residual.mean(), rel=1e-6)
    variance = (x.astype(np.float64) ** 2).sum(1).mean() - (x.astype(np.float64).mean(0) ** 2).sum()
    assert got["explained_variance"] == pytest.approx(1 - residual.mean() / variance, rel=1e-6)
    assert got["l0"] == pytest.approx((feats != 0).sum(1).mean())
    assert got["l1"] == pytest.approx(np.abs(feats).sum(1).mean(), rel=1e-6)
    cos = (x * x_hat).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(x_hat, axis=1)
    assert got["cos_sim"] == pytest.approx(cos.mean(), rel=1e-6)
    assert got["l2_ratio"] == pytest.approx((np.linalg.norm(x_hat, axis=1) / np.linalg.norm(x, axis=1)).mean(), rel=1e-6)
    legacy = np.concatenate([1 - residual[s:s + 100] / ((x[s:s + 100] - x[s:s + 100].mean(0)) ** 2).sum(1)
                             for s in range(0, len(x), 100)])
    assert got["explained_variance_legacy"] == pytest.approx(legacy.mean(), rel=1e-5)
    calculator = ExplainedVarianceCalculator()
    for s in range(0, len(x), 100):
        calculator.add_batch(torch.from_numpy(x_hat[s:s + 100]), torch.from_numpy(x[s:s + 100]))
    assert got["explained_variance"] == pytest.approx(calculator.compute(), rel=1e-7)  # it sums batches in float32


def test_decoder_geometry_in_blocks_matches_the_full_matrix():
    rng = np.random.default_rng(1)
    w_enc, w_dec = rng.normal(size=(8, 50)), rng.normal(size=(50, 8))
    got = decoder_geometry(torch.from_numpy(w_enc), torch.from_numpy(w_dec), block=7)
    unit = w_dec / np.linalg.norm(w_dec, axis=1, keepdims=True)
    cos = unit @ unit.T
    pairs = cos[np.triu_indices(50, k=1)]
    np.fill_diagonal(cos, -np.inf)
    np.testing.assert_allclose(got["max_decoder_cos"], cos.max(1), rtol=1e-5)
    assert got["dec_cos_mean"] == pytest.approx(pairs.mean(), abs=1e-6)
    assert got["dec_cos_max"] == pytest.approx(pairs.max(), abs=1e-6)
    assert got["dec_cos_p95"] == pytest.approx(np.quantile(pairs, 0.95), abs=2e-3)
    np.testing.assert_allclose(got["encoder_norm"], np.linalg.norm(w_enc, axis=0), rtol=1e-5)
    np.testing.assert_allclose(got["decoder_norm"], np.linalg.norm(w_dec, axis=1), rtol=1e-5)
    enc_dec = (w_enc.T * w_dec).sum(1) / np.linalg.norm(w_enc, axis=0) / np.linalg.norm(w_dec, axis=1)
    np.testing.assert_allclose(got["enc_dec_cos"], enc_dec, rtol=1e-5)


def test_gini_closed_forms():
    assert gini(np.ones(10)) == 0.0
    assert gini(np.array([0, 0, 0, 1.0])) == pytest.approx(0.75)
    assert gini(np.zeros(5)) == 0.0
    rng = np.random.default_rng(2)
    v = rng.random(200)
    mean_abs_diff = np.abs(v[:, None] - v[None, :]).mean()
    assert gini(v) == pytest.approx(mean_abs_diff / (2 * v.mean()), rel=1e-9)


def _one_batch(x, feats, x_hat, **kwargs):
    stats = FeatureStatistics(np.asarray(feats).shape[1], "cpu", **kwargs)
    stats.add(*(torch.tensor(a, dtype=torch.float32) for a in (x, feats, x_hat)), torch.arange(len(x)))
    return stats


def test_l2_ratio_counts_a_near_zero_input_norm_as_one():
    """sae-lens's rule: ‖x̂‖ / ‖x‖ with ‖x‖ < 1e-4 replaced by 1 (else a tiny input dominates)."""
    x, x_hat = [[3.0, 4.0], [1e-6, 0.0]], [[6.0, 8.0], [0.5, 0.0]]
    metrics = _one_batch(x, [[1.0], [1.0]], x_hat).metric_sums().metrics()
    assert metrics["l2_ratio"] == pytest.approx((10 / 5 + 0.5 / 1) / 2)


def test_the_largest_activation_falls_in_the_top_band():
    values = np.arange(1.0, 11.0)[:, None]  # one feature, active on all ten tokens, max 10 on token 9
    stats = _one_batch(np.ones((10, 2)), values, np.ones((10, 2)), sample_size=20)
    examples = _band_examples(stats, n_bands=10, per_band=5)
    assert (0, 9, 9, 10.0) in examples
    assert sorted(token for _, _, token, _ in examples) == list(range(10))  # every sampled token in a band


def test_max_act_of_features_with_negative_values():
    """Without a ReLU a feature can be negative: its max is its largest value when it is active
    on every token, and 0 (an inactive token's value) when some token left it at 0."""
    feats = [[-3.0, -3.0], [-1.0, 0.0], [-2.0, -2.0]]
    stats = _one_batch(np.ones((3, 2)), feats, np.ones((3, 2)))
    np.testing.assert_array_equal(stats.max_act(), np.max(np.asarray(feats), axis=0).astype(np.float32))


@pytest.mark.parametrize("residual, expected", [(0.0, 1.0), (0.5, 0.0)])
def test_explained_variance_of_inputs_without_variance(residual, expected):
    """All inputs equal: the denominator E‖x‖² − ‖E x‖² is 0; a perfect reconstruction explains
    everything (1), any other nothing (0) — never a division by zero."""
    x = np.tile([[1.0, 2.0, 3.0]], (8, 1))
    metrics = _one_batch(x, np.ones((8, 1)), x + residual).metric_sums().metrics()
    assert metrics["explained_variance"] == expected and np.isfinite(metrics["mse"])


@pytest.mark.parametrize("shards", [2, 3])
def test_shards_of_the_tokens_merge_into_the_whole_stream(batches, shards):
    """Statistics of disjoint token shards (each streamed in its own batches, with the tokens'
    global indices) merge into those of the whole stream: the split of `ingest sae`."""
    x, feats, x_hat = batches
    whole = _stream(batches, batch=97, top_k=5, sample_size=7, seed=4)
    parts = []
    for shard in range(shards):
        rows = np.flatnonzero(np.arange(len(x)) % shards == shard)
        stats = FeatureStatistics(feats.shape[1], "cpu", top_k=5, sample_size=7, seed=4)
        for start in range(0, len(rows), 41):
            chosen = rows[start:start + 41]
            stats.add(torch.from_numpy(x[chosen]), torch.from_numpy(feats[chosen]), torch.from_numpy(x_hat[chosen]),
                      torch.from_numpy(chosen))
        parts.append(stats.state())
    merged = FeatureStatistics.from_state(parts[0])
    for state in parts[1:]:
        merged.merge_state(state)
    for name in ("n_active", "histogram", "top_values", "top_tokens", "sample_keys", "sample_tokens",
                 "sample_values"):
        torch.testing.assert_close(getattr(merged, name), getattr(whole, name), rtol=0, atol=0, msg=name)
    torch.testing.assert_close(merged.sum_act, whole.sum_act, rtol=1e-12, atol=1e-12)
    ours, theirs = merged.metric_sums().metrics(), whole.metric_sums().metrics()
    del ours["explained_variance_legacy"], theirs["explained_variance_legacy"]  # centred per batch (sae-lens)
    assert ours == pytest.approx(theirs, rel=1e-12)
    assert merged.band_example_arrays().keys() == whole.band_example_arrays().keys()
    for name, values in merged.band_example_arrays().items():
        np.testing.assert_array_equal(values, whole.band_example_arrays()[name], err_msg=name)
