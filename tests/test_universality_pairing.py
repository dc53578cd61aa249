"""Streamed Pearson correlations against numpy, and matchings against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from quanta_db.results.universality.pairing import CrossCorrelation, match, top_partners


def test_streamed_correlation_equals_numpy_corrcoef_with_dead_features():
    rng = np.random.default_rng(0)
    a = np.maximum(rng.normal(size=(500, 9)) - 0.5, 0)
    b = np.maximum(rng.normal(size=(500, 7)) + a[:, :7] - 0.8, 0)
    a[:, 2] = 0  # dead: no variance
    b[:, 4] = 0.3  # constant
    cc = CrossCorrelation(9, 7, "cpu")
    for start in range(0, 500, 64):
        cc.add(torch.from_numpy(a[start:start + 64]), torch.from_numpy(b[start:start + 64]))
    got = cc.correlation()
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.corrcoef(a.T, b.T)[:9, 9:]
    # numpy leaves rounding noise (~1e-17) for a constant column; its correlation is undefined: NULL
    expected[np.ptp(a, axis=0) == 0, :] = np.nan
    expected[:, np.ptp(b, axis=0) == 0] = np.nan
    np.testing.assert_allclose(got, expected, atol=1e-6)  # NaN where numpy gives NaN
    assert np.isnan(got[2]).all() and np.isnan(got[:, 4]).all() and not np.isnan(got[0, 0])


def test_top_partners_rank_each_side():
    corr = np.array([[0.9, 0.1, np.nan], [0.2, 0.8, np.nan], [0.5, 0.7, np.nan]])
    rows = top_partners(corr, 2)
    b_side = [(a, b, rank) for a, b, _, rank, side in rows if side == "b"]
    assert (0, 0, 0) in b_side and (2, 0, 1) in b_side and (1, 1, 0) in b_side and (2, 1, 1) in b_side
    assert not [r for r in rows if r[1] == 2]  # a feature without variance ranks nowhere
    a_side = [(a, b, rank) for a, b, _, rank, side in rows if side == "a"]
    assert (2, 1, 0) in a_side and (2, 0, 1) in a_side


def _brute_force_one_to_one(corr):
    n_a, n_b = corr.shape
    best, best_pairs = -np.inf, None
    for perm in itertools.permutations(range(n_a), n_b):
        total = sum(corr[a, b] for b, a in enumerate(perm))
        if total > best:
            best, best_pairs = total, sorted((a, b) for b, a in enumerate(perm))
    return best_pairs


@pytest.mark.parametrize("seed", range(5))
def test_one_to_one_is_the_best_assignment(seed):
    corr = np.random.default_rng(seed).uniform(-1, 1, size=(6, 5))
    got = [(a, b) for a, b, _, _ in match(corr, "one-to-one")]
    assert got == _brute_force_one_to_one(corr)


def _sorted_greedy(corr):
    """The definition: walk all pairs from the highest correlation down (ties by position)."""
    usable = np.where(np.isnan(corr), -np.inf, corr)
    used_a, used_b, pairs = set(), set(), []
    for flat in np.argsort(-usable, axis=None, kind="stable"):
        a, b = np.unravel_index(flat, usable.shape)
        if np.isfinite(usable[a, b]) and a not in used_a and b not in used_b:
            used_a.add(a)
            used_b.add(b)
            pairs.append((int(a), int(b)))
    return sorted(pairs)


@pytest.mark.parametrize("seed", range(6))
def test_greedy_rounds_equal_the_sorted_definition(seed):
    rng = np.random.default_rng(seed)
    shape = [(40, 30), (30, 40), (25, 25)][seed % 3]
    corr = rng.uniform(-1, 1, size=shape)
    if seed >= 3:
        corr = corr.round(1)  # many ties
    corr[rng.random(shape) < 0.2] = np.nan
    corr[3, :] = np.nan  # a feature without variance
    got = [(a, b) for a, b, _, _ in match(corr.astype(np.float32), "greedy")]
    assert got == _sorted_greedy(corr.astype(np.float32))


def test_argmax_and_greedy_and_filters():
    corr = np.array([[0.9, 0.85, 0.1], [0.8, 0.2, 0.05], [0.1, 0.3, 0.02]])
    argmax = match(corr, "argmax")
    assert [(a, b, n) for a, b, _, n in argmax] == [(0, 0, 3), (0, 1, 3), (0, 2, 3)]
    assert match(corr, "argmax", max_many=2) == []
    greedy = [(a, b) for a, b, _, _ in match(corr, "greedy")]
    assert greedy == [(0, 0), (1, 2), (2, 1)]  # the best pair first, never first-come-first-served
    assert [(a, b) for a, b, _, _ in match(corr, "greedy", min_corr=0.1)] == [(0, 0), (2, 1)]
    excluded = match(corr, "argmax", exclude_a=np.array([True, False, False]))
    assert [(a, b, n) for a, b, _, n in excluded] == [(1, 0, 2), (1, 2, 2), (2, 1, 1)]
    with pytest.raises(ValueError, match="unknown matching method"):
        match(corr, "first-come")


def test_ingest_feature_pairs_matches_numpy_on_the_direct_activations(corpus_store, toy_model, tmp_path):
    from quanta_db.results.losses.job import ingest_losses
    from quanta_db.results.sae.job import ingest_sae
    from quanta_db.results.universality.job import ingest_feature_pairs
    from tests.helpers import build_sae, direct_sae_outputs

    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], progress=False)
    folder = build_sae("standard", 32, tmp_path / "sae")
    ingest_sae(corpus_store, str(folder), "toy", "tiny", step=8, name="a", progress=False)
    other = build_sae("topk", 32, tmp_path / "other")
    ingest_sae(corpus_store, str(other), "toy", "tiny", step=8, name="b", progress=False)
    result = ingest_feature_pairs(corpus_store, "a", "b", "toy", n_tokens=None, top_k=3, progress=False)
    _, feats_a, *_ = direct_sae_outputs(corpus_store, toy_model, folder)
    _, feats_b, *_ = direct_sae_outputs(corpus_store, toy_model, other)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.corrcoef(feats_a.T, feats_b.T)[:48, 48:]
    expected[np.ptp(feats_a, axis=0) == 0, :] = np.nan
    expected[:, np.ptp(feats_b, axis=0) == 0] = np.nan
    stored = np.asarray(corpus_store.artifact(result.run_id, "correlation"))
    np.testing.assert_allclose(stored, expected, atol=1e-5)
    best = corpus_store.query_df("SELECT feature_a, feature_b FROM feature_pairs WHERE side = 'b' AND rank = 0 "
                                 "ORDER BY feature_b")
    for row in best.itertuples():
        assert row.feature_a == np.nanargmax(expected[:, row.feature_b])
    assert ingest_feature_pairs(corpus_store, "a", "b", "toy", n_tokens=None, top_k=3, progress=False).skipped
    from quanta_db.results.universality.job import ingest_feature_matches

    matching = ingest_feature_matches(corpus_store, result.run_id, "one-to-one", exclude_dead=True)
    got = corpus_store.query_df("SELECT feature_a, feature_b, corr FROM feature_matches ORDER BY feature_a, feature_b")
    dead_a = np.ptp(feats_a, axis=0) == 0
    dead_b = np.ptp(feats_b, axis=0) == 0
    expected_pairs = match(stored.astype(np.float64), "one-to-one", exclude_a=dead_a, exclude_b=dead_b)
    assert list(zip(got.feature_a, got.feature_b)) == [(a, b) for a, b, _, _ in expected_pairs]
    assert not dead_a[got.feature_a].any() and not dead_b[got.feature_b].any() and matching.rows_written == len(got)
    from quanta_db.results.universality.job import ingest_metrics
    from quanta_db.results.universality.metrics import linear_cka, svcca

    scored = ingest_metrics(corpus_store, matching.run_id, ("cka", "svcca"), permutations=19, seed=0)
    results = corpus_store.query_df("SELECT * FROM metric_results ORDER BY metric, baseline")
    assert len(results) == 4 and scored.rows_written == 4 and set(results.n_permutations) == {19}
    from sae_lens import SAE

    x = SAE.load_from_disk(str(folder)).W_dec.detach().double().numpy()[got.feature_a.to_numpy()]
    y = SAE.load_from_disk(str(other)).W_dec.detach().double().numpy()[got.feature_b.to_numpy()]
    values = results.groupby("metric").value.first()
    assert values["cka"] == pytest.approx(linear_cka(x, y)) and values["svcca"] == pytest.approx(svcca(x, y))
    assert ((results.p_value >= 1 / 20) & (results.p_value <= 1)).all() and (results.n_pairs == len(got)).all()
    import json as json_module

    vocab = corpus_store.query_df("SELECT token FROM vocab").token
    categories = tmp_path / "categories.json"
    categories.write_text(json_module.dumps({"everything": sorted({t.strip().lower() for t in vocab}),
                                             "nothing": ["no-such-token-anywhere"]}))
    by_subject = ingest_metrics(corpus_store, matching.run_id, ("cka",), permutations=9, subspaces=str(categories))
    subjects = corpus_store.query_df(f"SELECT * FROM metric_results WHERE run_id = '{by_subject.run_id}'")
    assert set(subjects.subject) == {"all", "everything"}  # 'nothing' has no pairs: no rows
    everything = subjects[subjects.subject == "everything"].sort_values("baseline")
    matched_with_examples = corpus_store.query_df(
        f"SELECT count(*) AS n FROM feature_matches m WHERE matching = '{matching.run_id}' "
        "AND feature_a IN (SELECT feature FROM feature_examples WHERE sae = 'a' AND kind = 'top') "
        "AND feature_b IN (SELECT feature FROM feature_examples WHERE sae = 'b' AND kind = 'top')")["n"][0]
    assert (everything.n_pairs == matched_with_examples).all()
    import yaml

    as_yaml = tmp_path / "categories.yaml"
    as_yaml.write_text(yaml.safe_dump(json_module.loads(categories.read_text())))
    assert ingest_metrics(corpus_store, matching.run_id, ("cka",), permutations=9, subspaces=str(as_yaml)).skipped
    filtered = ingest_feature_matches(corpus_store, result.run_id, "argmax", token_filter=True)
    assert filtered.rows_written <= corpus_store.query_df(
        "SELECT count(*) AS n FROM feature_pairs WHERE side = 'b' AND rank = 0")["n"][0]


def test_token_filter_keeps_pairs_sharing_a_meaningful_top_token(monkeypatch):
    from quanta_db.results.universality import job

    assert not job._meaningful(",") and not job._meaningful(" \n") and not job._meaningful("<|endoftext|>")
    assert job._meaningful(" the") and job._meaningful("x2")
    tops = {"A": {0: {" the", ","}, 1: {","}, 2: {" cat"}}, "B": {0: {" the"}, 1: {",", "\n"}, 2: {" dog"}}}
    monkeypatch.setattr(job, "_top_tokens", lambda store, sae, corpus: tops[sae])
    pairs = [(0, 0, 0.9, 1), (1, 1, 0.8, 1), (2, 2, 0.7, 1), (0, 1, 0.5, 2)]
    kept = job._token_filter(None, {"sae_a": "A", "sae_b": "B", "corpus": "c"}, pairs)
    assert kept == [(0, 0, 0.9, 1)]
