"""Trajectory fits against sklearn; essential-dynamics features against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quanta_db.results.trajectories import dynamics
from quanta_db.results.trajectories.fit import hybrid, orient, pca, sparse_pca


def _centred(x):
    return x - x.mean(0)


def _sparse_data(seed=0, n=40, m=60):
    rng = np.random.default_rng(seed)
    loadings = np.zeros((3, m))
    for k, cols in enumerate((slice(0, 8), slice(10, 20), slice(30, 36))):
        loadings[k, cols] = rng.normal(2, 0.5, size=cols.stop - cols.start)
    return _centred(rng.normal(size=(n, 3)) @ loadings + 0.3 * rng.normal(size=(n, m)))


def test_pca_equals_sklearn_up_to_sign():
    from sklearn.decomposition import PCA

    x = _centred(np.random.default_rng(0).normal(size=(30, 200)) * np.linspace(3, 0.1, 200))
    reference = PCA(5, svd_solver="full").fit(x)
    got = pca(torch.from_numpy(x).float(), 5)
    np.testing.assert_allclose(got.explained_variance, reference.explained_variance_, rtol=1e-4)
    np.testing.assert_allclose(got.explained_variance_ratio, reference.explained_variance_ratio_, rtol=1e-4)
    signs = np.sign((got.components * reference.components_).sum(1))
    np.testing.assert_allclose(got.components * signs[:, None], reference.components_, atol=2e-4)
    np.testing.assert_allclose(got.scores * signs, reference.transform(x), atol=2e-3)


def test_sparse_pca_matches_sklearn_objective_and_support():
    from sklearn.decomposition import SparsePCA

    x = _sparse_data()
    reference = SparsePCA(3, alpha=1.0, ridge_alpha=0.01, max_iter=1000, tol=1e-6, random_state=42).fit(x)
    got = sparse_pca(torch.from_numpy(x), 3, alpha=1.0, ridge_alpha=0.01, max_iter=1000, tol=1e-6)
    assert got.cost == pytest.approx(reference.error_[-1], rel=0.01)
    for mine, theirs in zip(got.components, reference.components_):
        a, b = set(np.flatnonzero(mine)), set(np.flatnonzero(theirs))
        assert len(a & b) / len(a | b) >= 0.9
        assert abs(np.dot(mine, theirs)) > 0.99
    np.testing.assert_allclose(np.abs(got.scores), np.abs(reference.transform(x + 0)), rtol=0.05, atol=0.05)
    assert (got.sparsity > 0.5).all() and got.methods == ["sparse"] * 3


def test_hybrid_is_pca_then_sparse_pca_of_the_residual():
    from sklearn.decomposition import PCA, SparsePCA

    x = _sparse_data(1)
    dense = PCA(2, svd_solver="full").fit(x)
    residual = x - dense.inverse_transform(dense.transform(x))
    reference = SparsePCA(2, alpha=1.0, ridge_alpha=0.01, random_state=42).fit(residual)
    got = hybrid(torch.from_numpy(x).float(), 2, 2, alpha=1.0, ridge_alpha=0.01)
    assert got.methods == ["pca", "pca", "sparse", "sparse"]
    np.testing.assert_allclose(got.explained_variance[:2], dense.explained_variance_, rtol=1e-4)
    assert got.cost == pytest.approx(reference.error_[-1], rel=0.01)
    for mine, theirs in zip(got.components[2:], reference.components_):
        assert abs(np.dot(mine, theirs)) > 0.98
    assert np.all(got.explained_variance_ratio > 0) and got.explained_variance_ratio.sum() <= 1 + 1e-9


def test_orient_makes_the_reference_row_score_positive():
    x = _centred(np.random.default_rng(3).normal(size=(12, 30)))
    fit = orient(pca(torch.from_numpy(x), 4), reference_row=7)
    assert (fit.scores[7] >= 0).all()
    full = orient(pca(torch.from_numpy(x), 12), 7)  # flipping signs keeps the reconstruction
    np.testing.assert_allclose(full.scores @ full.components, x, atol=1e-4)


def test_curvature_of_a_circle_is_one_over_its_radius():
    t = np.linspace(0, 1.5 * np.pi, 400)
    circle = 2.5 * np.stack([np.cos(t), np.sin(t)], axis=1) + [1, -3]
    kappa = dynamics.curvature(circle)[2:-2]
    np.testing.assert_allclose(kappa, 1 / 2.5, rtol=1e-3)
    centres = dynamics.evolute(circle)[2:-2]
    np.testing.assert_allclose(centres, np.tile([1, -3], (len(centres), 1)), atol=1e-2)


def test_ellipse_cusps_of_the_evolute_at_its_vertices():
    t = np.linspace(0.3, 2 * np.pi - 0.3, 600)
    ellipse = np.stack([3 * np.cos(t), np.sin(t)], axis=1)  # vertices at t = pi/2, pi, 3pi/2 inside
    found = dynamics.events(ellipse)
    cusps = sorted(t[i] for i, kind, _ in found if kind == "cusp")
    np.testing.assert_allclose(cusps, [np.pi / 2, np.pi, 3 * np.pi / 2], atol=0.02)
    maxima = [(t[i], value) for i, kind, value in found if kind == "curvature_max"]
    assert len(maxima) == 1 and maxima[0][0] == pytest.approx(np.pi, abs=0.02)
    assert maxima[0][1] == pytest.approx(3 / 1**2, rel=1e-3)  # a / b² at the end of the major axis


def test_smoothing_keeps_lines_and_moves_sigma():
    line = np.stack([np.arange(60.0), 2 * np.arange(60.0)], axis=1)
    np.testing.assert_allclose(dynamics.smooth(line, 0, 0), line)
    smoothed = dynamics.smooth(line, 1.0, 3.0)
    np.testing.assert_allclose(smoothed[20:40], line[20:40], atol=1e-6)  # symmetric weights keep a line inside
    noisy = line + np.random.default_rng(0).normal(scale=0.5, size=line.shape)
    early, late = dynamics.smooth(noisy, 0.0, 4.0), noisy
    assert np.allclose(early[0], late[0]) and not np.allclose(early[-5], late[-5])


def _low_rank(rank, n=12, m=30, seed=4):
    rng = np.random.default_rng(seed)
    return _centred(rng.normal(size=(n, rank)) @ rng.normal(size=(rank, m)))


@pytest.mark.parametrize("noise_sign", [-1.0, 1.0])
def test_pca_beyond_the_rank_is_zero_whatever_sign_the_rounding_takes(monkeypatch, noise_sign):
    """On one machine the null eigenvalues of the Gram matrix come out slightly negative (NaN
    scores before), on another slightly positive (huge components): both must give the same,
    finite fit, with zero variance, scores and components beyond the rank."""
    from sklearn.decomposition import PCA

    x = _low_rank(3)
    true_eigh = torch.linalg.eigh

    def noisy_eigh(gram):
        values, vectors = true_eigh(gram)
        null = values.abs() < values.abs().max() * 1e-12
        return torch.where(null, noise_sign * 1e-17 * values.abs().max(), values), vectors

    monkeypatch.setattr(torch.linalg, "eigh", noisy_eigh)
    fit = pca(torch.from_numpy(x), 12)
    assert np.isfinite(fit.scores).all() and np.isfinite(fit.components).all()
    assert (fit.explained_variance[3:] == 0).all() and (fit.scores[:, 3:] == 0).all()
    assert (fit.components[3:] == 0).all()
    reference = PCA(3, svd_solver="full").fit(x)
    np.testing.assert_allclose(fit.explained_variance[:3], reference.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(fit.scores @ fit.components, x, atol=1e-5)
    oriented = orient(fit, 7)
    assert np.isfinite(oriented.scores).all()


def test_pca_of_a_square_centred_matrix_keeps_its_rank_minus_one():
    x = _centred(np.random.default_rng(3).normal(size=(12, 30)))  # centring leaves rank 11
    fit = pca(torch.from_numpy(x), 12)
    assert np.isfinite(fit.scores).all()
    assert (fit.explained_variance[:11] > 0).all() and fit.explained_variance[11] == 0
    np.testing.assert_allclose(fit.scores @ fit.components, x, atol=1e-4)


@pytest.mark.slow  # the sparse fit's iterations cost ~0.1 s each even at this size
def test_sparse_and_hybrid_fits_of_rank_deficient_data_are_finite():
    x = torch.from_numpy(_low_rank(2))
    sparse = sparse_pca(x, 6, alpha=0.1, max_iter=20)
    assert np.isfinite(sparse.scores).all() and np.isfinite(sparse.components).all()
    assert np.isfinite(sparse.cost) and np.isfinite(sparse.explained_variance).all()
    unregularised = sparse_pca(x, 6, alpha=0.1, ridge_alpha=0.0, max_iter=20)
    assert np.isfinite(unregularised.scores).all()
    both = hybrid(x, 2, 3, alpha=0.1, max_iter=20)  # PCA takes all the variance: the residual is rounding noise
    assert np.isfinite(both.scores).all() and np.allclose(both.scores[:, 2:], 0, atol=1e-8)
