"""Similarity of two paired matrices (row i of ``x`` is paired with row i of ``y``; e.g. the
decoder vectors of matched features of two SAEs), and permutation p-values against null baselines.

Every metric takes ``x`` [n, p] and ``y`` [n, q] (p and q may differ) and returns a float where
larger means more similar. The formulas are in each docstring.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import linalg, stats

from quanta_db.linalg import numerical_rank, rank_cutoff

Metric = Callable[[np.ndarray, np.ndarray], float]


def _centered(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a - a.mean(axis=0, keepdims=True)


def _varying(a: np.ndarray, side: str) -> np.ndarray:
    """Centred ``a``; a side whose rows are all equal has no direction to compare: refused."""
    centred = _centered(a)
    # Equal rows centre to rounding noise of the size of the entries times the row count.
    if np.abs(centred).max(initial=0.0) <= rank_cutoff(np.abs(np.asarray(a)).max(initial=0.0), centred.shape):
        raise ValueError(f"side {side} has no variance (all {len(centred)} rows are equal): the metric is undefined")
    return centred


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centered kernel alignment (Kornblith et al. 2019), with X, Y column-centred:
    CKA = ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F)  (= HSIC(XXᵀ, YYᵀ) / √(HSIC(XXᵀ, XXᵀ) HSIC(YYᵀ, YYᵀ)))."""
    x, y = _varying(x, "x"), _varying(y, "y")
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def reference_components(singular_values: np.ndarray, variance_fraction: float = 0.99) -> int:
    """How many directions univ_feat_geom's SVCCA keeps (its ``top_k_pca_comps``): the first k
    whose cumulative *fraction* of variance reaches ``variance_fraction`` × the *unnormalised*
    total Σσ², and 1 when none does — so one component whenever Σσ² > 1 / variance_fraction,
    more for small inputs. Reproduced for comparison with the paper; not a variance rule."""
    s2 = np.asarray(singular_values, dtype=np.float64) ** 2
    reached = np.cumsum(s2) / s2.sum() >= variance_fraction * s2.sum()
    return int(np.argmax(reached)) + 1


def _top_directions(a: np.ndarray, variance_fraction: float, n_components: int | None,
                    rule: str = "variance") -> np.ndarray:
    """Projection of centred ``a`` on its leading singular directions: the first ``n_components``,
    or the fewest whose squared singular values reach ``variance_fraction`` of the total
    (``rule="reference"``: :func:`reference_components` instead)."""
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    rank = numerical_rank(s, a.shape)  # ≥ 1: the side was checked to vary
    if n_components is None and rule == "reference":
        n_components = reference_components(s, variance_fraction)
    elif n_components is None:
        explained = np.cumsum(s[:rank] ** 2) / np.sum(s[:rank] ** 2)
        n_components = int(np.searchsorted(explained, variance_fraction - 1e-12) + 1)
    n_components = max(1, min(n_components, rank))
    return u[:, :n_components] * s[:n_components]


def svcca(x: np.ndarray, y: np.ndarray, variance_fraction: float = 0.99, n_components: int | None = None,
          rule: str = "variance") -> float:
    """SVCCA (Raghu et al. 2017): centre each side, keep its leading singular directions (the
    fewest explaining ``variance_fraction`` of the variance, or exactly ``n_components``), then
    the mean canonical correlation between the two reduced sides: the singular values of QₓᵀQᵧ
    for orthonormal bases Qₓ, Qᵧ of the reduced columns.

    ``rule="reference"`` keeps, per side, what the universality paper's code (univ_feat_geom)
    keeps: it compares the cumulative *fraction* of variance with ``variance_fraction`` × the
    *unnormalised* total (:func:`reference_components`), which keeps one component when the
    summed squared singular values exceed 1/0.99 (large or unscaled inputs) and two, three or more
    on small or rescaled ones. Stored as the metric ``svcca_reference``.
    """
    rx = _top_directions(_varying(x, "x"), variance_fraction, n_components, rule)
    ry = _top_directions(_varying(y, "y"), variance_fraction, n_components, rule)
    qx, _ = np.linalg.qr(rx)
    qy, _ = np.linalg.qr(ry)
    correlations = np.linalg.svd(qx.T @ qy, compute_uv=False)
    return float(np.mean(np.clip(correlations, 0.0, 1.0)))


def rsa(x: np.ndarray, y: np.ndarray) -> float:
    """Representational similarity analysis: Pearson-correlation similarity matrices of the rows
    of each side, then the Spearman correlation of their lower triangles (diagonal excluded)."""
    sx, sy = np.corrcoef(np.asarray(x, dtype=np.float64)), np.corrcoef(np.asarray(y, dtype=np.float64))
    lower = np.tril_indices(len(sx), k=-1)
    return float(stats.spearmanr(sx[lower], sy[lower]).statistic)


def procrustes(x: np.ndarray, y: np.ndarray) -> float:
    """Orthogonal Procrustes similarity: with X̂, Ŷ centred, scaled to unit Frobenius norm and
    zero-padded to the same width, the best rotation leaves a disparity
    min_R ‖X̂R − Ŷ‖²_F = 2 − 2‖X̂ᵀŶ‖_* (nuclear norm); the similarity is 1 − disparity / 2 = ‖X̂ᵀŶ‖_*,
    1 for sides equal up to rotation, translation and scale."""
    x, y = _varying(x, "x"), _varying(y, "y")
    width = max(x.shape[1], y.shape[1])
    x = np.pad(x, ((0, 0), (0, width - x.shape[1])))
    y = np.pad(y, ((0, 0), (0, width - y.shape[1])))
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    return float(np.linalg.svd(x.T @ y, compute_uv=False).sum())


def procrustes_rotation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The rotation R of :func:`procrustes` for equal widths (scipy's orthogonal_procrustes)."""
    return linalg.orthogonal_procrustes(_centered(x), _centered(y))[0]


def mutual_knn(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    """Mutual k-nearest-neighbour overlap: for each row, its k nearest other rows by cosine
    similarity on each side; the mean over rows of |N_x(i) ∩ N_y(i)| / k."""
    def neighbours(a):
        a = np.asarray(a, dtype=np.float64)
        unit = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        sim = unit @ unit.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]

    k = min(k, len(x) - 1)
    nx, ny = neighbours(x), neighbours(y)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(nx, ny)]))


def svcca_reference(x: np.ndarray, y: np.ndarray) -> float:
    """:func:`svcca` under univ_feat_geom's component rule (see there), to reproduce the paper."""
    return svcca(x, y, rule="reference")


METRICS: dict[str, Metric] = {"svcca": svcca, "svcca_reference": svcca_reference, "rsa": rsa, "cka": linear_cka,
                              "procrustes": procrustes, "mknn": mutual_knn}


def permutation_test(metric: str | Metric, x: np.ndarray, y: np.ndarray, n_permutations: int, seed: int,
                     baseline: str = "shuffled_pairing", pool_x: np.ndarray | None = None,
                     pool_y: np.ndarray | None = None, device="cpu") -> dict:
    """The metric's value on the pairing and its null distribution.

    ``shuffled_pairing``: the rows of ``y`` permuted; ``random_selection``: as many rows drawn
    without replacement from each whole SAE (``pool_x``, ``pool_y``). p = (1 + #{null ≥ value}) /
    (1 + n_permutations), so p is never 0 and is exact for exchangeable nulls. A metric named in
    :data:`METRICS` computes its null in batches on ``device`` (:mod:`.nulls`); any other callable
    is evaluated once per draw here.
    """
    from quanta_db.results.universality import nulls

    if isinstance(metric, str):
        value = METRICS[metric](x, y)
        null = nulls.null_distribution(metric, x, y, n_permutations, seed, baseline, pool_x, pool_y, device)
    else:
        value, null = metric(x, y), _null_loop(metric, x, y, n_permutations, seed, baseline, pool_x, pool_y)
    return {**nulls.summary(value, null), "n_pairs": len(x), "baseline": baseline}


def _null_loop(metric: Metric, x, y, n_permutations: int, seed: int, baseline: str, pool_x, pool_y) -> np.ndarray:
    rng = np.random.default_rng(seed)
    null = np.empty(n_permutations)
    for i in range(n_permutations):
        if baseline == "shuffled_pairing":
            null[i] = metric(x, y[rng.permutation(len(y))])
        elif baseline == "random_selection":
            if pool_x is None or pool_y is None:
                raise ValueError("random_selection needs pool_x and pool_y (all rows of each side)")
            null[i] = metric(pool_x[rng.choice(len(pool_x), len(x), replace=False)],
                             pool_y[rng.choice(len(pool_y), len(y), replace=False)])
        else:
            raise ValueError(f"unknown baseline {baseline!r}")
    return null
