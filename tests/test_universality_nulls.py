"""Batched (device) permutation nulls against the numpy metrics, draw by draw."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from quanta_db.results.universality import metrics, nulls

CASES = {"svcca": metrics.svcca, "svcca_reference": metrics.svcca_reference, "rsa": metrics.rsa,
         "cka": metrics.linear_cka, "procrustes": metrics.procrustes, "mknn": metrics.mutual_knn}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_batched_metric_equals_the_numpy_metric_per_pairing(name):
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(7, 9))
    x = rng.normal(size=(4, 30, 7))
    y = np.stack([x[0] @ mixing + 0.1 * rng.normal(size=(30, 9)), rng.normal(size=(30, 9)),
                  x[2] @ mixing, rng.normal(size=(30, 9)) * np.r_[10, 1, 1e-3, 1, 1, 1, 1, 1, 1]])
    got = nulls.BATCHED[name](torch.from_numpy(x), torch.from_numpy(y)).numpy()
    expected = [CASES[name](a, b) for a, b in zip(x, y)]
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)


def test_batched_svcca_keeps_the_same_components_as_numpy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 40, 6)) * np.array([5, 3, 1, 0.1, 0.01, 0.001])
    y = x @ rng.normal(size=(6, 6)) + 0.05 * rng.normal(size=(3, 40, 6))
    for kwargs in ({"variance_fraction": 0.9}, {"variance_fraction": 0.999}, {"n_components": 1}, {"n_components": 4}):
        got = nulls.svcca_batched(torch.from_numpy(x), torch.from_numpy(y), **kwargs).numpy()
        np.testing.assert_allclose(got, [metrics.svcca(a, b, **kwargs) for a, b in zip(x, y)], rtol=1e-7)


@pytest.mark.parametrize("name", sorted(CASES))
def test_shuffled_pairing_values_equal_the_metric_on_permuted_rows(name):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(25, 6))
    y = x @ rng.normal(size=(6, 8)) + 0.5 * rng.normal(size=(25, 8))
    perms = torch.stack([torch.from_numpy(rng.permutation(25)) for _ in range(7)] + [torch.arange(25)])
    got = nulls.shuffled_pairing(name, torch.from_numpy(x), torch.from_numpy(y))(perms).numpy()
    expected = [CASES[name](x, y[p.numpy()]) for p in perms]
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ["cka", "procrustes", "svcca", "rsa"])
def test_shuffled_pairing_draws_are_permutations_of_y(name):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    possible = np.array([CASES[name](x, y[list(p)]) for p in itertools.permutations(range(5))])
    # a tiny budget forces one draw per chunk
    null = nulls.null_distribution(name, x, y, 40, seed=0, baseline="shuffled_pairing", budget_bytes=1)
    assert len(null) == 40 and len(np.unique(null.round(10))) > 5
    assert all(np.isclose(possible, value, rtol=1e-9).any() for value in null)


def test_random_selection_draws_distinct_rows_of_each_pool():
    rng = np.random.default_rng(3)
    pool_x, pool_y = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    possible = np.array([metrics.linear_cka(pool_x[list(a)], pool_y[list(b)])
                         for a in itertools.permutations(range(6), 4) for b in itertools.combinations(range(6), 4)])
    null = nulls.null_distribution("cka", pool_x[:4], pool_y[:4], 30, seed=1, baseline="random_selection",
                                   pool_x=pool_x, pool_y=pool_y)
    assert all(np.isclose(possible, value, rtol=1e-9).any() for value in null)
    with pytest.raises(ValueError, match="pool_x"):
        nulls.null_distribution("cka", pool_x, pool_y, 3, seed=1, baseline="random_selection")


def test_p_value_counts_ties_and_is_never_zero():
    assert nulls.p_value(1.0, np.array([0.0, 1.0, 2.0])) == pytest.approx(3 / 4)
    assert nulls.p_value(5.0, np.zeros(9)) == pytest.approx(1 / 10)


@pytest.mark.parametrize("name", sorted(CASES))
def test_batched_metrics_of_rank_deficient_pairings_equal_numpy(name):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, 30, 2)) @ rng.normal(size=(2, 6))  # rank 2 in 6 columns
    y = x @ rng.normal(size=(6, 5)) + 0.1 * rng.normal(size=(3, 30, 5))
    got = nulls.BATCHED[name](torch.from_numpy(x), torch.from_numpy(y)).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, [CASES[name](a, b) for a, b in zip(x, y)], atol=1e-8)


def test_a_null_whose_draws_have_no_variance_is_refused():
    pool = np.ones((40, 4))
    x = np.random.default_rng(0).normal(size=(10, 4))
    with pytest.raises(ValueError, match="without variance"):
        nulls.null_distribution("cka", x, x, 20, 0, "random_selection", pool, pool)
