"""Permutation nulls on the device: the similarity metrics of :mod:`.metrics` evaluated on a
whole batch of permuted or resampled pairings at once.

Each ``*_batched`` function takes ``x`` [P, n, p] and ``y`` [P, n, q] (P pairings of n rows) and
returns [P] values equal to the numpy metric applied to each pairing (tested one by one against
:mod:`.metrics`). :func:`null_distribution` draws the P pairings of a baseline and feeds them to
a batched metric in chunks sized to a memory budget.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import torch

from quanta_db.linalg import numerical_rank

BatchedMetric = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _centered(a: torch.Tensor) -> torch.Tensor:
    return a - a.mean(dim=1, keepdim=True)


def cka_batched(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Linear CKA per pairing: ‖YᵀX‖²_F / (‖XᵀX‖_F ‖YᵀY‖_F), columns centred."""
    x, y = _centered(x), _centered(y)
    cross = torch.linalg.matrix_norm(y.mT @ x) ** 2
    return cross / (torch.linalg.matrix_norm(x.mT @ x) * torch.linalg.matrix_norm(y.mT @ y))


def _leading_basis(a: torch.Tensor, variance_fraction: float, n_components: int | None,
                   rule: str = "variance") -> torch.Tensor:
    """Orthonormal basis of each centred side's leading singular directions, later columns zeroed
    (the number kept differs between pairings): the fewest reaching ``variance_fraction`` of
    the variance, or ``n_components``, never beyond the numerical rank (``rule="reference"``:
    :func:`.metrics.reference_components`)."""
    u, s, _ = torch.linalg.svd(_centered(a), full_matrices=False)
    if n_components is None and rule == "reference":
        total = torch.sum(s**2, dim=1, keepdim=True)
        reached = torch.cumsum(s**2, dim=1) / total >= variance_fraction * total
        kept = torch.where(reached.any(dim=1), reached.to(torch.int8).argmax(dim=1), 0) + 1
    elif n_components is None:
        explained = torch.cumsum(s**2, dim=1) / torch.sum(s**2, dim=1, keepdim=True).clamp_min(torch.finfo(s.dtype).tiny)
        kept = (explained < variance_fraction - 1e-12).sum(dim=1) + 1
    else:
        kept = torch.full(s.shape[:1], n_components, device=s.device)
    rank = numerical_rank(s, tuple(a.shape))
    kept = torch.clamp(torch.minimum(kept, rank), min=1)
    mask = torch.arange(s.shape[1], device=s.device)[None, :] < kept[:, None]
    return u * mask[:, None, :], kept


def svcca_batched(x: torch.Tensor, y: torch.Tensor, variance_fraction: float = 0.99,
                  n_components: int | None = None, rule: str = "variance") -> torch.Tensor:
    """SVCCA per pairing: mean canonical correlation (singular values of QₓᵀQᵧ) between the
    leading singular directions of the centred sides (see :func:`.metrics.svcca`)."""
    qx, kx = _leading_basis(x, variance_fraction, n_components, rule)
    qy, ky = _leading_basis(y, variance_fraction, n_components, rule)
    # Zeroed columns add zero singular values: the sum is over the min(kx, ky) real ones.
    correlations = torch.linalg.svdvals(qx.mT @ qy).clamp(0, 1)
    return correlations.sum(dim=1) / torch.minimum(kx, ky)


def _lower_triangle(a: torch.Tensor) -> torch.Tensor:
    rows, cols = torch.tril_indices(a.shape[1], a.shape[2], offset=-1, device=a.device)
    return a[:, rows, cols]


def _row_correlations(a: torch.Tensor) -> torch.Tensor:
    """Pearson correlation between the rows of each [n, d] matrix (numpy ``corrcoef``)."""
    z = a - a.mean(dim=2, keepdim=True)
    z = z / z.norm(dim=2, keepdim=True)
    return z @ z.mT


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Ordinal ranks along the last axis (the values here are continuous: ties have probability 0)."""
    ranks = torch.empty_like(v)
    order = v.argsort(dim=1)
    ranks.scatter_(1, order, torch.arange(v.shape[1], dtype=v.dtype, device=v.device).expand_as(v).contiguous())
    return ranks


def _pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1))


def rsa_batched(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """RSA per pairing: Spearman correlation of the lower triangles (no diagonal) of the rows'
    Pearson-correlation matrices on each side."""
    return _pearson(_ranks(_lower_triangle(_row_correlations(x))), _ranks(_lower_triangle(_row_correlations(y))))


def procrustes_batched(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Orthogonal Procrustes similarity per pairing: ‖X̂ᵀŶ‖_* for centred, unit-Frobenius sides
    (zero-padding to equal width adds only zero singular values)."""
    x, y = _centered(x), _centered(y)
    x = x / torch.linalg.matrix_norm(x)[:, None, None]
    y = y / torch.linalg.matrix_norm(y)[:, None, None]
    return torch.linalg.svdvals(x.mT @ y).sum(dim=1)


def mutual_knn_batched(x: torch.Tensor, y: torch.Tensor, k: int = 10) -> torch.Tensor:
    """Mutual k-NN overlap per pairing: mean over rows of |N_x(i) ∩ N_y(i)| / k, neighbours by
    cosine similarity among the other rows."""
    k = min(k, x.shape[1] - 1)

    nx, ny = _neighbours(x, k), _neighbours(y, k)
    shared = (nx[..., :, None] == ny[..., None, :]).any(dim=3).sum(dim=2)
    return shared.to(x.dtype).mean(dim=1) / k


BATCHED: dict[str, BatchedMetric] = {"svcca": svcca_batched, "rsa": rsa_batched, "cka": cka_batched,
                                     "svcca_reference": functools.partial(svcca_batched, rule="reference"),
                                     "procrustes": procrustes_batched, "mknn": mutual_knn_batched}


def _neighbours(a: torch.Tensor, k: int) -> torch.Tensor:
    unit = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    sim = unit @ unit.mT
    sim.diagonal(dim1=-2, dim2=-1).fill_(-torch.inf)
    return sim.topk(k, dim=-1).indices


def shuffled_pairing(metric: str, x: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``values(perms)`` = [metric(x, y[perm]) for perm in perms] ([P, n] permutations), with all
    that a row permutation of y leaves unchanged computed once: column centring, the singular
    bases (the SVD of PY is P times the SVD of Y), Gram norms, the ranks of the similarity
    matrices (permuting rows permutes the same off-diagonal values) and the k-NN lists (the
    neighbours of row i of PY are P⁻¹ of the neighbours of row π(i) of Y)."""
    if metric == "cka":
        xc, yc = _centered(x[None])[0], _centered(y[None])[0]
        scale = torch.linalg.matrix_norm(xc.mT @ xc) * torch.linalg.matrix_norm(yc.mT @ yc)
        return lambda perms: torch.linalg.matrix_norm(yc[perms].mT @ xc) ** 2 / scale
    if metric in ("svcca", "svcca_reference"):
        rule = "reference" if metric == "svcca_reference" else "variance"
        (qx, kx), (qy, ky) = _leading_basis(x[None], 0.99, None, rule), _leading_basis(y[None], 0.99, None, rule)
        kept = torch.minimum(kx, ky)
        return lambda perms: torch.linalg.svdvals(qx[0].mT @ qy[0][perms]).clamp(0, 1).sum(dim=1) / kept
    if metric == "procrustes":
        xc, yc = _centered(x[None])[0], _centered(y[None])[0]
        xc, yc = xc / torch.linalg.matrix_norm(xc), yc / torch.linalg.matrix_norm(yc)
        return lambda perms: torch.linalg.svdvals(xc.mT @ yc[perms]).sum(dim=1)
    if metric == "rsa":
        rows, cols = torch.tril_indices(len(x), len(x), offset=-1, device=x.device)
        rx = _ranks(_lower_triangle(_row_correlations(x[None])))[0]
        rx = (rx - rx.mean()) / (rx - rx.mean()).norm()
        ry = _ranks(_lower_triangle(_row_correlations(y[None])))[0]
        full = torch.zeros(len(y), len(y), dtype=ry.dtype, device=y.device)
        full[rows, cols], full[cols, rows] = ry, ry
        centre, norm = ry.mean(), (ry - ry.mean()).norm()
        return lambda perms: ((full[perms[:, rows], perms[:, cols]] - centre) @ rx) / norm
    if metric == "mknn":
        k = min(10, len(x) - 1)
        nx, ny = _neighbours(x, k), _neighbours(y, k)

        def values(perms):
            inverse = perms.argsort(dim=1)
            moved = torch.gather(inverse, 1, ny[perms].flatten(1)).view(*perms.shape, k)
            return (moved[..., :, None] == nx[None, :, None, :]).any(dim=3).sum(dim=2).to(x.dtype).mean(dim=1) / k
        return values
    raise ValueError(f"unknown metric {metric!r}")


def _bytes_per_draw(metric: str, n: int, width: int, baseline: str) -> int:
    """Rough float64 working memory of one draw, to size the chunks."""
    if metric in ("rsa", "mknn"):
        # shuffled: one gathered triangle (mknn: n x k x k comparisons); resampled: both similarity matrices
        return 8 * 2 * n * n if baseline == "shuffled_pairing" or metric == "rsa" else 8 * 6 * n * n
    return 8 * (2 if baseline == "shuffled_pairing" else 6) * n * width


def null_distribution(metric: str, x: np.ndarray, y: np.ndarray, n_permutations: int, seed: int, baseline: str,
                      pool_x: np.ndarray | None = None, pool_y: np.ndarray | None = None, device="cpu",
                      budget_bytes: float | None = None) -> np.ndarray:
    """[n_permutations] metric values under a null baseline, computed in batches on ``device``.

    ``shuffled_pairing``: y's rows permuted (a uniform random permutation per draw; see
    :func:`shuffled_pairing`); ``random_selection``: len(x) rows drawn without replacement from
    each whole side (``pool_x``, ``pool_y``), every draw a new pair of matrices for the
    ``*_batched`` metric. Draws come from one torch generator seeded with ``seed``. Chunks of
    draws fill ``budget_bytes`` (default: half the free GPU memory, or 2 GiB on CPU).
    """
    from quanta_db.runtime.device import memory_budget_bytes

    if baseline not in ("shuffled_pairing", "random_selection"):
        raise ValueError(f"unknown baseline {baseline!r}")
    if baseline == "random_selection" and (pool_x is None or pool_y is None):
        raise ValueError("random_selection needs pool_x and pool_y (all rows of each side)")
    device = torch.device(device)
    budget_bytes = budget_bytes or memory_budget_bytes(device, 0.5, 2 * 2**30)
    generator = torch.Generator(device=device).manual_seed(seed)
    as_tensor = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float64), device=device)  # noqa: E731
    x_t, y_t = as_tensor(x), as_tensor(y)
    n = len(x_t)
    if n < 3:
        raise ValueError(f"a null distribution needs at least 3 pairs, got {n}")
    if baseline == "shuffled_pairing":
        shuffled = shuffled_pairing(metric, x_t, y_t)
        draw = lambda size: shuffled(torch.rand(size, n, generator=generator, device=device).argsort(dim=1))  # noqa: E731
    else:
        pools = (as_tensor(pool_x), as_tensor(pool_y))
        draw = lambda size: BATCHED[metric](*(  # noqa: E731
            pool[torch.rand(size, len(pool), generator=generator, device=device).topk(n, dim=1).indices]
            for pool in pools))
    chunk = max(1, int(budget_bytes // _bytes_per_draw(metric, n, max(x_t.shape[1], y_t.shape[1]), baseline)))
    values = [draw(min(chunk, n_permutations - start)) for start in range(0, n_permutations, chunk)]
    null = torch.cat(values).cpu().numpy() if values else np.empty(0)
    undefined = int(np.sum(~np.isfinite(null)))
    if undefined:  # a drawn side without variance: the metric is undefined there, and so is the p-value
        raise ValueError(f"{metric}: {undefined} of {len(null)} null draws had a side without variance "
                         f"({baseline}); the baseline is undefined for these inputs")
    return null


def p_value(value: float, null: np.ndarray) -> float:
    """p = (1 + #{null ≥ value}) / (1 + len(null)): never 0, exact for exchangeable nulls."""
    return float((1 + np.sum(null >= value)) / (1 + len(null)))


def summary(value: float, null: np.ndarray) -> dict:
    return {"value": value, "null_mean": float(null.mean()),
            "null_std": float(null.std(ddof=1)) if len(null) > 1 else 0.0, "p_value": p_value(value, null),
            "n_permutations": len(null)}

