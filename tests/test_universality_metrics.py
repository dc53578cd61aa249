"""Similarity metrics against closed forms and invariances; permutation p-values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.stats import ortho_group

from quanta_db.results.universality.metrics import (
    linear_cka,
    mutual_knn,
    permutation_test,
    procrustes,
    procrustes_rotation,
    rsa,
    svcca,
)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(80, 12))


def _hsic(k, l):
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l @ h) / (n - 1) ** 2


def test_cka_equals_its_hsic_form_and_is_rotation_and_scale_invariant(x):
    y = np.random.default_rng(1).normal(size=(80, 7)) + x[:, :7]
    expected = _hsic(x @ x.T, y @ y.T) / np.sqrt(_hsic(x @ x.T, x @ x.T) * _hsic(y @ y.T, y @ y.T))
    assert linear_cka(x, y) == pytest.approx(expected, rel=1e-10)
    rotation = ortho_group.rvs(12, random_state=2)
    assert linear_cka(x @ rotation * 3.5 + 1.0, x) == pytest.approx(1.0)


def test_svcca_is_one_on_identical_sides_and_invariant_to_invertible_maps(x):
    assert svcca(x, x) == pytest.approx(1.0)
    invertible = np.random.default_rng(3).normal(size=(12, 12)) + 3 * np.eye(12)
    y = np.random.default_rng(4).normal(size=(80, 12)) + 0.5 * x
    full = dict(n_components=12)
    assert svcca(x @ invertible, y, **full) == pytest.approx(svcca(x, y, **full), rel=1e-9)
    # the canonical correlations are those of numpy's own CCA on the whitened sides
    qx, _ = np.linalg.qr(x - x.mean(0))
    qy, _ = np.linalg.qr(y - y.mean(0))
    assert svcca(x, y, **full) == pytest.approx(np.linalg.svd(qx.T @ qy, compute_uv=False).mean(), rel=1e-9)
    assert 0 < svcca(x, y, variance_fraction=0.5) <= 1
    assert svcca(x, y, n_components=1) == pytest.approx(
        abs(np.corrcoef(*(np.linalg.svd(a - a.mean(0), full_matrices=False)[0][:, 0] for a in (x, y)))[0, 1]))


def test_rsa_and_mknn_on_identical_and_unrelated_sides(x):
    assert rsa(x, x) == pytest.approx(1.0)
    assert mutual_knn(x, x, k=5) == 1.0
    unrelated = np.random.default_rng(5).normal(size=(80, 12))
    assert abs(rsa(x, unrelated)) < 0.1
    assert mutual_knn(x, unrelated, k=5) < 0.2
    sx, sy = np.corrcoef(x), np.corrcoef(unrelated)
    lower = np.tril_indices(80, k=-1)
    assert rsa(x, unrelated) == pytest.approx(stats.spearmanr(sx[lower], sy[lower]).statistic)


def test_procrustes_closed_form(x):
    rotation = ortho_group.rvs(12, random_state=6)
    assert procrustes(x, 2.0 * x @ rotation + 5.0) == pytest.approx(1.0)
    np.testing.assert_allclose(procrustes_rotation(x, x @ rotation), rotation, atol=1e-8)
    y = np.random.default_rng(7).normal(size=(80, 12))
    xc, yc = x - x.mean(0), y - y.mean(0)
    xc, yc = xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)
    r = procrustes_rotation(xc, yc)
    assert procrustes(x, y) == pytest.approx(1 - np.linalg.norm(xc @ r - yc) ** 2 / 2, rel=1e-9)


@pytest.mark.parametrize("cka", [linear_cka, "cka"], ids=["per-draw loop", "batched on the device"])
def test_p_values_are_minimal_for_a_planted_signal_and_uniform_under_the_null(cka):
    rng = np.random.default_rng(8)
    x = rng.normal(size=(40, 6))
    planted = permutation_test(cka, x, x @ ortho_group.rvs(6, random_state=9) + 0.1 * rng.normal(size=(40, 6)),
                               n_permutations=99, seed=0)
    assert planted["p_value"] == pytest.approx(1 / 100) and planted["value"] > planted["null_mean"] + 5 * planted["null_std"]
    p_values = [permutation_test(cka, rng.normal(size=(20, 4)), rng.normal(size=(20, 4)), n_permutations=49,
                                 seed=s)["p_value"] for s in range(200)]
    assert stats.kstest(p_values, "uniform").pvalue > 0.01
    pool_x, pool_y = rng.normal(size=(200, 6)), rng.normal(size=(200, 6))
    selection = permutation_test(cka, x, x, 20, seed=1, baseline="random_selection", pool_x=pool_x,
                                 pool_y=pool_y)
    assert selection["p_value"] == pytest.approx(1 / 21) and selection["baseline"] == "random_selection"


def _rank_deficient(rank, n=50, width=8, seed=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, rank)) @ rng.normal(size=(rank, width))


def test_metrics_of_rank_deficient_sides_equal_independent_references():
    from scipy.linalg import subspace_angles
    from scipy.spatial import procrustes as scipy_procrustes

    x = _rank_deficient(3)
    y = x @ np.random.default_rng(6).normal(size=(8, 8)) + 0.3 * _rank_deficient(2, seed=7)
    xc, yc = x - x.mean(0), y - y.mean(0)
    # SVCCA keeping every direction = mean cosine of the principal angles between the column spaces.
    expected = np.mean(np.cos(subspace_angles(xc, yc)))
    assert svcca(x, y, variance_fraction=1.0) == pytest.approx(expected, abs=1e-9)
    # Procrustes similarity = sqrt(1 - scipy's disparity) for equal widths.
    assert procrustes(x, y) == pytest.approx(np.sqrt(1 - scipy_procrustes(x, y)[2]), abs=1e-9)
    assert np.isfinite(linear_cka(x, y)) and np.isfinite(rsa(x, y))


@pytest.mark.parametrize("metric", [svcca, linear_cka, procrustes])
def test_a_side_without_variance_is_refused_with_a_reason(metric):
    constant = np.tile(np.arange(6.0), (20, 1))
    with pytest.raises(ValueError, match="no variance"):
        metric(constant, np.random.default_rng(0).normal(size=(20, 6)))
