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


def _hsic(k, l):  # noqa: E741  (K and L, as in Gretton et al.)
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


def _with_singular_values(squared, n=40, width=6, seed=0):
    """A centred n × width matrix whose singular values are sqrt(squared), and its left basis."""
    rng = np.random.default_rng(seed)
    draws = rng.normal(size=(n, len(squared)))
    left, _ = np.linalg.qr(draws - draws.mean(0))  # columns orthonormal and orthogonal to the ones vector
    right, _ = np.linalg.qr(rng.normal(size=(width, len(squared))))
    return left @ np.diag(np.sqrt(squared)) @ right.T, left


@pytest.mark.parametrize("squared, kept", [
    ([100.0, 25.0, 9.0, 1.0], 1),   # sum of squares > 1/0.99: the reference keeps one component
    ([0.3, 0.2, 0.05, 0.05], 2),    # cumulative fractions .5, .83 .. reach 0.99 x 0.6 = 0.594 at the 2nd
    ([0.3, 0.25, 0.2, 0.05], 3),    # .375, .6875, .9375 reach 0.99 x 0.8 = 0.792 at the 3rd
])
def test_svcca_reference_rule_keeps_what_univ_feat_geom_keeps(squared, kept):
    from scipy.linalg import subspace_angles

    from quanta_db.results.universality.metrics import reference_components, svcca_reference

    x, left_x = _with_singular_values(squared, seed=1)
    y, left_y = _with_singular_values([4.0, 3.0, 2.0, 1.0, 0.5][: len(squared)], seed=2)
    y = y * np.sqrt(np.asarray(squared).sum() / 10.5)  # same scale class as x, so both sides keep `kept`
    assert reference_components(np.sqrt(squared)) == kept
    k_y = reference_components(np.linalg.svd(y - y.mean(0), compute_uv=False)[:len(squared)])
    expected = np.mean(np.cos(subspace_angles(left_x[:, :kept], left_y[:, :k_y])))
    assert svcca_reference(x, y) == pytest.approx(expected, abs=1e-9)
    if kept > 1:  # our own variance rule keeps more here: the two rules are told apart in the row
        assert svcca(x, y) != pytest.approx(svcca_reference(x, y), abs=1e-6)


def test_mutual_knn_with_k_at_least_the_rows_compares_all_other_rows():
    from quanta_db.results.universality.nulls import mutual_knn_batched

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(5, 4)), rng.normal(size=(5, 7))
    assert mutual_knn(x, y, k=10) == 1.0  # k becomes n - 1: every other row is a neighbour on both sides
    assert mutual_knn(x, y, k=4) == 1.0 and mutual_knn(x, y, k=2) < 1.0
    import torch

    assert float(mutual_knn_batched(torch.from_numpy(x)[None], torch.from_numpy(y)[None])[0]) == 1.0


def test_random_selection_draws_without_replacement_and_needs_both_pools():
    rng = np.random.default_rng(4)
    pool_x, pool_y = rng.normal(size=(12, 3)), rng.normal(size=(12, 3))
    x, y = pool_x[:10], pool_y[:10]

    def distinct_rows(a, b):  # 1.0 when no row was drawn twice on either side
        return float(len(np.unique(a, axis=0)) == len(a) and len(np.unique(b, axis=0)) == len(b))

    result = permutation_test(distinct_rows, x, y, 50, 0, "random_selection", pool_x, pool_y)
    assert result["null_mean"] == 1.0
    for metric in ("cka", distinct_rows):
        with pytest.raises(ValueError, match="needs pool_x and pool_y"):
            permutation_test(metric, x, y, 5, 0, "random_selection", pool_x)
