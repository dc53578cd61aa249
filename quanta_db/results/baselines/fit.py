"""Fitting K dictionary directions to an activation matrix: PCA on the device, ICA and NMF with
scikit-learn.

- PCA: the covariance's top-K eigenvectors (float64 Gram of the centred activations, streamed in
  row blocks on the device, then ``eigh``) — scikit-learn's ``PCA(svd_solver="covariance_eigh")``
  computed on the device; signs as scikit-learn's ``svd_flip(u_based_decision=False)`` (each
  component's largest-|·| entry positive); explained variance with ddof = 1 as ``PCA``.
- ICA: ``FastICA(n_components=K, whiten="unit-variance", random_state=seed)`` on the host.
- NMF: ``NMF(n_components=K, init="nndsvda", random_state=seed)`` on the activations shifted by
  their per-dimension minimum. Shifted rather than cut to their ReLU parts: the shift is undone
  exactly by the decoder's bias, so the dictionary reconstructs x itself and its explained
  variance is comparable with an SAE's, where ReLU parts would drop every negative coordinate
  (about half of a residual stream's energy) before fitting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from quanta_db.errors import InputError
from quanta_db.linalg import positive_part, rank_cutoff

ROW_BLOCK = 65536


@dataclass
class Fit:
    w_enc: np.ndarray  # [d_in, K]
    w_dec: np.ndarray  # [K, d_in]
    b_dec: np.ndarray  # [d_in]
    explained_variance: np.ndarray | None  # per component (PCA), ddof = 1
    total_variance: float  # trace of the covariance, ddof = 1
    n_iter: int | None = None  # iterations of an iterative fit (ICA, NMF)
    converged: bool = True  # an iterative fit stopped by its tolerance, not by max_iter


def check_width(k: int, width: int, hook_name: str) -> None:
    """K directions cannot exceed the hook's width (checked by the job before any activation is
    streamed, and again here for direct callers)."""
    if k > width:
        raise InputError(f"--n-components {k} is larger than the width {width} of {hook_name}")


def check_fit_input(x: torch.Tensor, k: int, method: str, hook_name: str) -> None:
    """Refusals before any fit: K wider than the hook, too few tokens for K."""
    n, d = x.shape
    check_width(k, d, hook_name)
    if n < max(k, 2):
        raise InputError(f"{n} tokens are too few to fit {k} {method} components (need at least {max(k, 2)}); "
                         "pass more --n-tokens or a larger corpus")


def centred_gram(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, Σ (x − mean)(x − mean)ᵀ) of ``x`` [n, d] in float64, two passes over row blocks (the
    matrix stays in its dtype; one block at a time is widened)."""
    blocks = [x[start:start + ROW_BLOCK] for start in range(0, len(x), ROW_BLOCK)]
    mean = sum(block.sum(0, dtype=torch.float64) for block in blocks) / len(x)
    gram = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
    for block in blocks:
        centred = block.double() - mean
        gram.addmm_(centred.T, centred)
    return mean, gram


def fit_pca(x: torch.Tensor, k: int) -> Fit:
    """Top-``k`` principal directions of ``x`` [n, d] (see the module docstring)."""
    mean, gram = centred_gram(x)
    covariance = gram / (len(x) - 1)
    values, vectors = torch.linalg.eigh((covariance + covariance.T) / 2)
    values, vectors = values.flip(0), vectors.flip(1)
    values = positive_part(values, rank_cutoff(values[:1].clamp(min=0), tuple(x.shape)))
    total = float(values.sum())
    if total <= 0:
        raise InputError("the activations do not vary over the fit tokens: no principal directions")
    components = vectors[:, :k].T
    largest = components.abs().argmax(dim=1)
    signs = torch.sign(components[torch.arange(k, device=components.device), largest])
    components = components * torch.where(signs == 0, torch.ones_like(signs), signs)[:, None]
    w = components.float().cpu().numpy()
    return Fit(w.T.copy(), w, mean.float().cpu().numpy(), values[:k].cpu().numpy(), total)


def fit_ica(x: torch.Tensor, k: int, seed: int, max_iter: int = 400) -> Fit:
    from sklearn.decomposition import FastICA

    data = x.cpu().numpy().astype(np.float64)
    ica = FastICA(n_components=k, whiten="unit-variance", random_state=seed, max_iter=max_iter)
    converged = _fit_quietly(ica, data, max_iter)
    if not (np.isfinite(ica.components_).all() and np.isfinite(ica.mixing_).all()):
        raise InputError(f"ICA gave non-finite components: the activations have fewer than {k} independent "
                         "directions over the fit tokens; pass a smaller --n-components")
    return Fit(ica.components_.T.astype(np.float32), ica.mixing_.T.astype(np.float32),
               ica.mean_.astype(np.float32), None, _total_variance(data), int(ica.n_iter_), converged)


def nmf_shift(x: torch.Tensor, hook_name: str) -> np.ndarray:
    """Per-dimension minimum over the fit tokens, the offset that makes them non-negative; refused
    where it is undefined: activations that never vary (x − min is all zero, nothing to factor)."""
    low = x.min(dim=0).values
    if not bool((x.max(dim=0).values > low).any()):
        raise InputError(f"NMF needs activations that vary: every fit token has the same activation at {hook_name}, "
                         "so the shift to non-negative values leaves nothing to factor")
    return low.cpu().numpy().astype(np.float64)


def fit_nmf(x: torch.Tensor, k: int, seed: int, hook_name: str, max_iter: int = 1000) -> Fit:
    from sklearn.decomposition import NMF

    shift = nmf_shift(x, hook_name)
    data = x.cpu().numpy().astype(np.float64)
    nmf = NMF(n_components=k, init="nndsvda", random_state=seed, max_iter=max_iter)
    converged = _fit_quietly(nmf, np.maximum(data - shift, 0), max_iter)
    basis = nmf.components_.astype(np.float32)
    return Fit(basis.T.copy(), basis, shift.astype(np.float32), None, _total_variance(data), int(nmf.n_iter_),
               converged)


def fit_dictionary(method: str, x: torch.Tensor, k: int, seed: int, hook_name: str) -> Fit:
    check_fit_input(x, k, method, hook_name)
    if method == "pca":
        return fit_pca(x, k)
    if method == "ica":
        return fit_ica(x, k, seed)
    return fit_nmf(x, k, seed, hook_name)


def _total_variance(data: np.ndarray) -> float:
    return float(data.var(axis=0, ddof=1).sum())


def _fit_quietly(estimator, data: np.ndarray, max_iter: int) -> bool:
    """Fit; whether it converged. scikit-learn's warning when a fit stops at ``max_iter`` goes
    to the dictionary's metadata and the job's message instead of stderr."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        estimator.fit(data)
    return int(estimator.n_iter_) < max_iter
