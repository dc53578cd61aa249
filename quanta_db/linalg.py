"""Numerical rank for the decompositions that divide by singular values or eigenvalues.

A matrix of rank r has singular values beyond r that are zero in exact arithmetic and rounding
noise in floating point, whose size and even sign (for eigenvalues of a Gram matrix) depend on the
BLAS kernel. Dividing by them turns noise into overflow: a test that passed on one machine gave NaN
on another. Every such division in quanta-db goes through the cut-offs here, which treat values
within rounding of zero as zero, the same on every machine.

Cut-offs (float64, ε = machine epsilon):
- singular values σ of an m × n matrix: σ ≤ σ_max · max(m, n) · ε is zero — numpy's
  ``matrix_rank`` default (Golub & Van Loan, *Matrix Computations*, §2.5.5);
- eigenvalues λ of a Gram matrix A Aᵀ (λ = σ²), whose rounding error is of order
  λ_max · max(m, n) · ε: λ ≤ that is zero (so σ resolves only down to √(max(m, n) · ε) · σ_max).
"""

from __future__ import annotations

import numpy as np
import torch

EPS = float(np.finfo(np.float64).eps)


def rank_cutoff(largest, shape: tuple[int, ...]):
    """Values at or below this are zero, given the largest: ``largest`` · max(m, n) · ε, for the
    singular values of an m × n matrix (σ_max) or the eigenvalues of its Gram matrix (λ_max)."""
    return largest * max(shape[-2:]) * EPS


def numerical_rank(singular_values, shape: tuple[int, ...]):
    """How many singular values (sorted descending along the last axis) are above the cut-off;
    works on numpy arrays and on batched torch tensors."""
    if isinstance(singular_values, torch.Tensor):
        cutoff = rank_cutoff(singular_values[..., :1], shape)
        return (singular_values > cutoff).sum(dim=-1)
    s = np.asarray(singular_values)
    return int(np.sum(s > rank_cutoff(s[..., :1], shape))) if s.size else 0


def positive_part(values: torch.Tensor, cutoff) -> torch.Tensor:
    """``values`` with everything at or below ``cutoff`` set to exactly 0 (no negative noise)."""
    return torch.where(values > cutoff, values, torch.zeros_like(values))


def safe_reciprocal(values: torch.Tensor) -> torch.Tensor:
    """1 / values where values > 0, else 0: for scaling by singular values already cut to zero."""
    positive = values > 0
    return torch.where(positive, 1.0 / torch.where(positive, values, torch.ones_like(values)),
                       torch.zeros_like(values))
