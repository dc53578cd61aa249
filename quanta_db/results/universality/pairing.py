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

_SUMS = ("sum_a", "sum_b", "sum_aa", "sum_bb", "sum_ab")


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
        # float32 GEMM per batch, added into the float64 sums element by element (no float64 temporary)
        self.sum_ab.add_(a.T @ b)

    def state(self) -> dict:
        """The sums, on the host: a shard's part of a split (:meth:`merge_state`)."""
        return {"n": self.n, **{k: getattr(self, k).cpu() for k in _SUMS}}

    def merge_state(self, state: dict) -> None:
        """Add the sums of other tokens (another shard's :meth:`state`)."""
        self.n += state["n"]
        for name in _SUMS:
            getattr(self, name).add_(state[name].to(self.device))

    @classmethod
    def from_states(cls, states: list[dict], device="cpu") -> CrossCorrelation:
        d_a, d_b = states[0]["sum_ab"].shape
        merged = cls(d_a, d_b, device)
        for state in states:
            merged.merge_state(state)
        return merged

    def correlation_tensor(self) -> torch.Tensor:
        """[d_a, d_b] Pearson correlations as float32 on the device (NaN where either feature has no variance)."""
        n = max(self.n, 1)
        mean_a, mean_b = self.sum_a / n, self.sum_b / n
        var_a = (self.sum_aa / n - mean_a**2).clamp_min(0)
        var_b = (self.sum_bb / n - mean_b**2).clamp_min(0)
        # Relative thresholds: variance that is rounding noise of the squared means counts as none.
        flat_a = var_a <= 1e-12 * (self.sum_aa / n).clamp_min(1e-300)
        flat_b = var_b <= 1e-12 * (self.sum_bb / n).clamp_min(1e-300)
        # In place, row block by row block: at 32k x 32k the float64 sums are the only full-size buffer.
        corr = torch.empty(self.sum_ab.shape, dtype=torch.float32, device=self.device)
        scale_b = torch.rsqrt(var_b)
        for start in range(0, corr.shape[0], 1024):
            rows = slice(start, start + 1024)
            block = self.sum_ab[rows] / n - mean_a[rows, None] * mean_b[None, :]
            corr[rows] = (block * torch.rsqrt(var_a[rows])[:, None] * scale_b[None, :]).clamp(-1, 1)
        corr[flat_a, :] = torch.nan
        corr[:, flat_b] = torch.nan
        return corr

    def correlation(self) -> np.ndarray:
        """[d_a, d_b] Pearson correlations as a numpy float64 array (see :meth:`correlation_tensor`)."""
        return self.correlation_tensor().double().cpu().numpy()


def top_partners(corr, k: int) -> list[tuple[int, int, float, int, str]]:
    """(feature_a, feature_b, corr, rank, side): each B feature's k best A features (side 'b') and
    each A feature's k best B features (side 'a'); NaN correlations never rank. ``corr`` is a numpy
    array or a tensor (top-k runs where it lives)."""
    ranked = torch.as_tensor(corr).float().nan_to_num(nan=-torch.inf)
    rows = []
    for side, matrix in (("b", ranked.T), ("a", ranked)):
        values, partners = matrix.topk(min(k, matrix.shape[1]), dim=1)
        values, partners = values.cpu().numpy(), partners.cpu().numpy()
        for feature, rank in zip(*np.nonzero(np.isfinite(values))):
            partner = int(partners[feature, rank])
            a, b = (partner, int(feature)) if side == "b" else (int(feature), partner)
            rows.append((a, b, float(values[feature, rank]), int(rank), side))
    return rows


def match(corr, method: str, min_corr: float | None = None, max_many: int | None = None,
          exclude_a: np.ndarray | None = None, exclude_b: np.ndarray | None = None) -> list[tuple[int, int, float, int]]:
    """(feature_a, feature_b, corr, n_many) pairs of ``method``:

    - ``argmax``: each B feature to its best A feature (many-to-1);
    - ``one-to-one``: the assignment maximising the total correlation (scipy ``linear_sum_assignment``);
    - ``greedy``: repeatedly the globally best remaining pair whose features are both unused.

    Then pairs below ``min_corr`` are dropped, and A features matched more than ``max_many``
    times; ``exclude_a`` / ``exclude_b`` (boolean masks, e.g. dead features) never match.
    n_many = how many B features the pair's A feature is matched to (after the filters).
    ``corr`` may be a memory-mapped float32 array: one float64 working copy is made.
    """
    if method not in ("argmax", "one-to-one", "greedy"):
        raise ValueError(f"unknown matching method {method!r} (argmax, one-to-one, greedy)")
    usable = np.array(corr, dtype=np.float64)
    usable[np.isnan(usable)] = -np.inf
    if exclude_a is not None:
        usable[np.asarray(exclude_a, dtype=bool), :] = -np.inf
    if exclude_b is not None:
        usable[:, np.asarray(exclude_b, dtype=bool)] = -np.inf
    if method == "argmax":
        pairs = [(int(a), b) for b, a in enumerate(np.argmax(usable, axis=0))]
        values = usable[[a for a, _ in pairs], [b for _, b in pairs]] if pairs else np.empty(0)
    elif method == "one-to-one":
        pairs, values = _one_to_one(usable)
    else:
        pairs, values = _greedy(usable)
    keep = np.isfinite(values) & (values >= min_corr if min_corr is not None else True)
    pairs = [pair for pair, kept in zip(pairs, keep) if kept]
    counts = np.bincount([a for a, _ in pairs], minlength=usable.shape[0])
    if max_many is not None:
        pairs = [(a, b) for a, b in pairs if counts[a] <= max_many]
        counts = np.bincount([a for a, _ in pairs], minlength=usable.shape[0])
    return [(a, b, float(corr[a, b]), int(counts[a])) for a, b in sorted(pairs)]


def _one_to_one(usable: np.ndarray) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Exact maximum-weight assignment; ``usable`` is overwritten with the cost (in place, so a
    32k x 32k problem holds one float64 matrix)."""
    impossible = ~np.isfinite(usable)
    cost = np.negative(usable, out=usable)
    cost[impossible] = 3.0  # above any -corr: an impossible pair is never preferred
    rows, cols = linear_sum_assignment(cost)
    values = -cost[rows, cols]
    values[impossible[rows, cols]] = -np.inf
    return [(int(a), int(b)) for a, b in zip(rows, cols)], values


def _greedy(usable: np.ndarray, block: int = 1024) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Greedy matching by locally dominant pairs: a pair that is the best remaining partner of both
    its features is the one the global greedy order takes (Preis 1999, for distinct values), so each
    round takes all of them at once; only rows / columns whose best partner was taken are searched
    again. ``usable`` is overwritten (taken rows and columns become -inf)."""
    row_best = _argmax_rows(usable, np.arange(usable.shape[0]), block)
    col_best = _argmax_rows(usable.T, np.arange(usable.shape[1]), block)
    pairs, values = [], []
    while True:
        a = np.flatnonzero(col_best[row_best] == np.arange(len(row_best)))
        b = row_best[a]
        found = np.isfinite(usable[a, b])
        a, b = a[found], b[found]
        if not len(a):
            return pairs, np.array(values)
        pairs += [(int(i), int(j)) for i, j in zip(a, b)]
        values += usable[a, b].tolist()
        usable[a, :] = -np.inf
        usable[:, b] = -np.inf
        stale_rows = np.flatnonzero(np.isin(row_best, b))
        stale_cols = np.flatnonzero(np.isin(col_best, a))
        row_best[stale_rows] = _argmax_rows(usable, stale_rows, block)
        col_best[stale_cols] = _argmax_rows(usable.T, stale_cols, block)


def _argmax_rows(matrix: np.ndarray, rows: np.ndarray, block: int) -> np.ndarray:
    """Argmax of the chosen rows, in blocks (each block of a transposed view is a strided copy)."""
    return np.concatenate([np.argmax(matrix[rows[i:i + block]], axis=1) for i in range(0, len(rows), block)]
                          or [np.empty(0, dtype=np.int64)])
