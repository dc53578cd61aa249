"""Correlating the features of two SAEs over the same tokens, and matching them.

Pearson correlation from streamed sufficient statistics: per batch of tokens the sums Σa, Σb,
Σa², Σb² and the cross products Σ a bᵀ (one GEMM on the device) are added to float64
accumulators; at the end corr = cov / √(var_a var_b) with cov = Σab/n − mean_a mean_bᵀ. A
feature without variance (e.g. dead on these tokens) has correlation NaN (stored as NULL).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


class CrossCorrelation:
    """Streaming Pearson correlation between the columns of A [n, d_a] and B [n, d_b]."""

    def __init__(self, d_a: int, d_b: int, device):
        self.device = torch.device(device)
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=self.device)  # noqa: E731
        self.n = 0
        self.sum_a, self.sum_b = zeros(d_a), zeros(d_b)
        self.sum_aa, self.sum_bb = zeros(d_a), zeros(d_b)
        self.sum_ab = zeros(d_a, d_b)

    @torch.no_grad()
    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        a, b = a.float(), b.float()
        self.n += a.shape[0]
        self.sum_a += a.sum(0, dtype=torch.float64)
        self.sum_b += b.sum(0, dtype=torch.float64)
        self.sum_aa += a.pow(2).sum(0, dtype=torch.float64)
        self.sum_bb += b.pow(2).sum(0, dtype=torch.float64)
        self.sum_ab += (a.T @ b).double()  # float32 GEMM per batch, float64 across batches

    def correlation(self) -> np.ndarray:
        """[d_a, d_b] Pearson correlations (NaN where either feature has no variance)."""
        n = max(self.n, 1)
        mean_a, mean_b = self.sum_a / n, self.sum_b / n
        var_a = (self.sum_aa / n - mean_a**2).clamp_min(0)
        var_b = (self.sum_bb / n - mean_b**2).clamp_min(0)
        cov = self.sum_ab / n - mean_a[:, None] * mean_b[None, :]
        # Relative thresholds: variance that is rounding noise of the squared means counts as none.
        flat_a = var_a <= 1e-12 * (self.sum_aa / n).clamp_min(1e-300)
        flat_b = var_b <= 1e-12 * (self.sum_bb / n).clamp_min(1e-300)
        corr = cov / torch.sqrt(var_a[:, None] * var_b[None, :])
        corr[flat_a, :] = torch.nan
        corr[:, flat_b] = torch.nan
        return corr.clamp(-1, 1).cpu().numpy()


def top_partners(corr: np.ndarray, k: int) -> list[tuple[int, int, float, int, str]]:
    """(feature_a, feature_b, corr, rank, side): each B feature's k best A features (side 'b') and
    each A feature's k best B features (side 'a'); NaN correlations never rank."""
    rows = []
    ranked = np.where(np.isnan(corr), -np.inf, corr)
    for side, matrix in (("b", ranked.T), ("a", ranked)):
        k_side = min(k, matrix.shape[1])
        best = np.argsort(-matrix, axis=1, kind="stable")[:, :k_side]
        for feature, partners in enumerate(best):
            for rank, partner in enumerate(partners):
                if np.isfinite(matrix[feature, partner]):
                    a, b = (partner, feature) if side == "b" else (feature, partner)
                    rows.append((int(a), int(b), float(corr[a, b]), rank, side))
    return rows


def match(corr: np.ndarray, method: str, min_corr: float | None = None, max_many: int | None = None,
          exclude_a: np.ndarray | None = None, exclude_b: np.ndarray | None = None) -> list[tuple[int, int, float, int]]:
    """(feature_a, feature_b, corr, n_many) pairs of ``method``:

    - ``argmax``: each B feature to its best A feature (many-to-1);
    - ``one-to-one``: the assignment maximising the total correlation (scipy ``linear_sum_assignment``);
    - ``greedy``: repeatedly the globally best remaining pair whose features are both unused.

    Then pairs below ``min_corr`` are dropped, and A features matched more than ``max_many``
    times; ``exclude_a`` / ``exclude_b`` (boolean masks, e.g. dead features) never match.
    n_many = how many B features the pair's A feature is matched to (after the filters).
    """
    usable = np.where(np.isnan(corr), -np.inf, corr)
    if exclude_a is not None:
        usable[np.asarray(exclude_a, dtype=bool), :] = -np.inf
    if exclude_b is not None:
        usable[:, np.asarray(exclude_b, dtype=bool)] = -np.inf
    if method == "argmax":
        a_of_b = np.argmax(usable, axis=0)
        pairs = [(int(a), b) for b, a in enumerate(a_of_b)]
    elif method == "one-to-one":
        finite = np.isfinite(usable)
        cost = np.where(finite, -usable, 3.0)  # above any -corr: an impossible pair is never preferred
        rows, cols = linear_sum_assignment(cost)
        pairs = [(int(a), int(b)) for a, b in zip(rows, cols)]
    elif method == "greedy":
        order = np.argsort(-usable, axis=None, kind="stable")
        used_a, used_b, pairs = set(), set(), []
        for flat in order:
            a, b = np.unravel_index(flat, usable.shape)
            if not np.isfinite(usable[a, b]) or len(pairs) == min(usable.shape):
                break
            if a not in used_a and b not in used_b:
                used_a.add(a)
                used_b.add(b)
                pairs.append((int(a), int(b)))
    else:
        raise ValueError(f"unknown matching method {method!r} (argmax, one-to-one, greedy)")
    pairs = [(a, b) for a, b in pairs if np.isfinite(usable[a, b])]
    if min_corr is not None:
        pairs = [(a, b) for a, b in pairs if usable[a, b] >= min_corr]
    counts = np.bincount([a for a, _ in pairs], minlength=corr.shape[0])
    if max_many is not None:
        pairs = [(a, b) for a, b in pairs if counts[a] <= max_many]
        counts = np.bincount([a for a, _ in pairs], minlength=corr.shape[0])
    return [(a, b, float(corr[a, b]), int(counts[a])) for a, b in sorted(pairs)]
