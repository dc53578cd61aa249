"""Exact streaming moments of activations in float64 on the device, merged batch by batch.

Per batch the mean and the central sums Σ(x − x̄_b)^p (p = 2, 3, 4) and the co-moment
Σ(x − x̄_b)(x − x̄_b)ᵀ are computed around the batch's own mean, then merged into the running
ones with the pairwise formulas of Chan, Golub & LeVeque (1979) and Pébay (2008, SAND2008-6212,
eqs. 3.1–3.3). Raw power sums (Σx⁴ − …) would lose every digit of a dimension whose mean is large
against its spread — the outlier dimensions these statistics are for — where central sums merged
this way stay exact to float64 rounding.

Definitions (population, i.e. ddof = 0, as numpy's defaults):
- mean, std = √(M2/n), mean_square = M2/n + mean², kurtosis = n·M4/M2² − 3 (Fisher's excess,
  scipy.stats.kurtosis's default; undefined for a constant dimension);
- covariance = C/n, its eigenvalues λ (descending, rounding noise cut to 0 by
  :func:`quanta_db.linalg.rank_cutoff`); participation ratio = (Σλ)²/Σλ² (Gao et al. 2017);
  variance in the top k directions = Σ_{i<k} λ_i / Σλ;
- mean pair cosine = mean over ordered pairs of distinct tokens of cos(x_i, x_j)
  = (‖Σ u_i‖² − Σ‖u_i‖²) / (n(n − 1)), u_i = x_i/‖x_i‖ (0 for a zero vector): exact over all pairs,
  from one running sum (Ethayarajh 2019 estimates it from sampled pairs).
"""

from __future__ import annotations

import numpy as np
import torch

from quanta_db.linalg import positive_part, rank_cutoff

TOP_DIRECTIONS = (1, 10, 100)


class ActivationMoments:
    """Running float64 moments of [tokens, d] activation batches (:meth:`add`), on ``device``."""

    def __init__(self, d: int, device, covariance: bool = True):
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.float64, device=device)  # noqa: E731
        self.n = 0
        self.mean, self.m2, self.m3, self.m4 = zeros(d), zeros(d), zeros(d), zeros(d)
        self.comoment = zeros(d, d) if covariance else None
        self.max_abs = zeros(d)
        self.sum_unit = zeros(d)
        self.n_nonzero = torch.zeros((), dtype=torch.int64, device=device)  # on the device: no sync per batch

    @torch.no_grad()
    def add(self, x: torch.Tensor) -> None:
        if not len(x):
            return
        xb = x.to(self.mean.device, torch.float64)
        nb = xb.shape[0]
        mean_b = xb.mean(0)
        c = xb - mean_b
        c2 = c * c
        m2b, m3b, m4b = c2.sum(0), (c2 * c).sum(0), (c2 * c2).sum(0)
        na, n = self.n, self.n + nb
        delta = mean_b - self.mean
        m2a, m3a = self.m2, self.m3
        self.m4 = (self.m4 + m4b + delta**4 * na * nb * (na * na - na * nb + nb * nb) / n**3
                   + 6 * delta**2 * (na * na * m2b + nb * nb * m2a) / n**2 + 4 * delta * (na * m3b - nb * m3a) / n)
        self.m3 = m3a + m3b + delta**3 * na * nb * (na - nb) / n**2 + 3 * delta * (na * m2b - nb * m2a) / n
        self.m2 = m2a + m2b + delta**2 * na * nb / n
        if self.comoment is not None:
            self.comoment += c.T @ c + torch.outer(delta, delta) * (na * nb / n)
        self.mean = self.mean + delta * (nb / n)
        self.n = n
        self.max_abs = torch.maximum(self.max_abs, xb.abs().max(0).values)
        norms = xb.norm(dim=1, keepdim=True)
        nonzero = norms > 0
        self.sum_unit += torch.where(nonzero, xb / torch.where(nonzero, norms, torch.ones_like(norms)), 0).sum(0)
        self.n_nonzero += nonzero.sum()

    # -- results -----------------------------------------------------------------------------
    def dimensions(self) -> dict[str, np.ndarray]:
        """Per dimension: mean, std, mean_square, kurtosis (NaN where constant), max_abs,
        energy_fraction (its share of Σ over dimensions of the mean square)."""
        n = max(self.n, 1)
        mean, m2, m4 = (t.cpu().numpy() for t in (self.mean, self.m2, self.m4))
        variance = m2 / n
        mean_square = variance + mean**2
        total = mean_square.sum()
        # per dimension, M2 within rounding of a constant's (n²·mean²·ε) is zero: kurtosis undefined
        varies = m2 > rank_cutoff(mean**2 * n, (n, 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            kurtosis = np.where(varies, n * m4 / np.where(varies, m2, 1) ** 2 - 3, np.nan)
        return {"mean": mean, "std": np.sqrt(np.maximum(variance, 0)), "mean_square": mean_square,
                "kurtosis": kurtosis, "max_abs": self.max_abs.cpu().numpy(),
                "energy_fraction": mean_square / total if total > 0 else np.zeros_like(mean_square)}

    def spectrum(self) -> np.ndarray:
        """Eigenvalues of the (population) covariance, descending, noise below the cut-off as 0."""
        covariance = self.comoment / max(self.n, 1)
        values = torch.linalg.eigvalsh((covariance + covariance.T) / 2).flip(0)
        return positive_part(values, rank_cutoff(values[:1].clamp(min=0), (self.n, len(values)))).cpu().numpy()

    def summary(self, spectrum: np.ndarray) -> dict[str, float | None]:
        """Isotropy measures of these activations (definitions in the module docstring)."""
        total = float(spectrum.sum())
        squares = float((spectrum**2).sum())
        pairs = self.n * (self.n - 1)
        unit_sum = float(self.sum_unit.pow(2).sum())
        row = {"n_tokens": self.n, "d": len(spectrum), "total_variance": total,
               "participation_ratio": total**2 / squares if squares > 0 else None,
               "mean_pair_cosine": (unit_sum - int(self.n_nonzero)) / pairs if pairs > 0 else None}
        for k in TOP_DIRECTIONS:
            row[f"variance_top{k}"] = float(spectrum[:k].sum()) / total if total > 0 else None
        return row
