"""Joint PCA, sparse PCA and the hybrid of both over a (model, step) × token loss matrix, on the device.

- PCA: eigendecomposition of the rows' Gram matrix X_c X_cᵀ (float64; rows are few — models ×
  checkpoints — and columns many), so X_c = U S Vᵀ gives scores U S and components Vᵀ without an
  SVD of the wide matrix. Same results as sklearn's ``PCA`` (up to sign).
- Sparse PCA: sklearn's ``SparsePCA`` objective ½‖X_c − U V‖²_F + α‖V‖₁ with ‖U_k‖₂ ≤ 1, by
  sklearn's own alternation (``dict_learning`` on X_cᵀ: SVD start, sparse code, then block-
  coordinate dictionary update projected on the unit ball, stop when the cost falls by less than
  ``tol`` × cost) with the sparse-code step done as batched coordinate descent over all columns
  at once on the device (sklearn solves one LARS path per column). Components are the rows of V
  scaled to unit norm; scores are sklearn's ridge transform (V Vᵀ + ridge_alpha I)⁻¹ V x.
- Hybrid: PCA, then sparse PCA of the residual X_c − scores · components.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from quanta_db.linalg import positive_part, rank_cutoff, safe_reciprocal


@dataclass
class Fit:
    """``components`` [k, n_columns], ``scores`` [n_rows, k]; per component its method, the
    variance of its scores and that over the total variance, and its fraction of zero loadings."""

    components: np.ndarray
    scores: np.ndarray
    methods: list[str]
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    sparsity: np.ndarray
    n_iter: int = 0
    cost: float = float("nan")


def _total_variance(x: torch.Tensor) -> float:
    return float((x.double() ** 2).sum() / max(x.shape[0] - 1, 1))


def _ratio(variance: np.ndarray, total: float) -> np.ndarray:
    """Explained-variance ratios (zeros when the matrix has no variance)."""
    return variance / total if total > 0 else np.zeros_like(variance)


def _gram(x: torch.Tensor, block: int = 1 << 16) -> torch.Tensor:
    """X Xᵀ in float64, accumulated over column blocks (no float64 copy of X)."""
    gram = torch.zeros(x.shape[0], x.shape[0], dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[1], block):
        part = x[:, start:start + block].double()
        gram += part @ part.T
    return gram


def pca(x: torch.Tensor, n_components: int) -> Fit:
    """PCA of the column-centred ``x`` [n_rows, n_columns] (centre it first).

    Components beyond the matrix's numerical rank (eigenvalues of X Xᵀ within rounding of zero,
    :func:`quanta_db.linalg.rank_cutoff`) come out as zero vectors with zero variance
    and zero scores, on every machine."""
    n_components = min(n_components, x.shape[0], x.shape[1])
    eigenvalues, eigenvectors = torch.linalg.eigh(_gram(x))
    order = torch.argsort(eigenvalues, descending=True)[:n_components]
    kept = positive_part(eigenvalues[order], rank_cutoff(eigenvalues.max().clamp_min(0), tuple(x.shape)))
    singular = kept.sqrt()
    u = eigenvectors[:, order] * (singular > 0)
    components = (u.T @ x.double()) * safe_reciprocal(singular)[:, None]
    variance = singular**2 / max(x.shape[0] - 1, 1)
    total = _total_variance(x)
    variance = variance.cpu().numpy()
    return Fit(components.float().cpu().numpy(), (u * singular).cpu().numpy(), ["pca"] * n_components,
               variance, _ratio(variance, total), np.zeros(n_components))


def _sparse_code(gram: torch.Tensor, correlation: torch.Tensor, code: torch.Tensor, alpha: float,
                 max_iter: int = 1000, tol: float = 1e-10) -> torch.Tensor:
    """Lasso per column, all columns at once: argmin_v ½‖x − U v‖² + α‖v‖₁ with G = UᵀU and
    C = UᵀX, by cyclic coordinate descent from ``code`` [k, n_columns]."""
    code = code.clone()
    for _ in range(max_iter):
        changes = []
        for c in range(gram.shape[0]):
            if gram[c, c] <= 0:
                code[c] = 0
                continue
            rest = correlation[c] - gram[c] @ code + gram[c, c] * code[c]
            new = torch.sign(rest) * (rest.abs() - alpha).clamp_min(0) / gram[c, c]
            changes.append((new - code[c]).abs().max())
            code[c] = new
        if not changes or float(torch.stack(changes).max()) <= tol * max(float(code.abs().max()), 1e-300):
            break
    return code


def _update_dictionary(dictionary: torch.Tensor, x: torch.Tensor, code: torch.Tensor, generator) -> None:
    """sklearn's ``_update_dict`` in our orientation: dictionary U [n_rows, k], code V [k, n_columns];
    each atom in turn moves to its least-squares value given the others, then onto ‖U_k‖ ≤ 1;
    an atom that is (almost) never used is restarted from a random row of the data plus noise."""
    a = code @ code.T
    b = x @ code.T
    for k in range(dictionary.shape[1]):
        if a[k, k] > 1e-6:
            dictionary[:, k] += (b[:, k] - dictionary @ a[:, k]) / a[k, k]
        else:
            column = x[:, int(torch.randint(x.shape[1], (1,), generator=generator))]
            noise = torch.randn(column.shape, generator=generator, dtype=column.dtype).to(column.device)
            dictionary[:, k] = column + 0.01 * (float(column.std()) or 1.0) * noise
            code[k] = 0
        dictionary[:, k] /= max(float(dictionary[:, k].norm()), 1.0)


def _cost(x_sq: float, x: torch.Tensor, dictionary: torch.Tensor, code: torch.Tensor, alpha: float) -> float:
    """½‖X − U V‖² + α‖V‖₁ without forming the residual: ‖X‖² − 2⟨UᵀX, V⟩ + ⟨UᵀU, V Vᵀ⟩."""
    fit = x_sq - 2 * float(((dictionary.T @ x) * code).sum()) + float(((dictionary.T @ dictionary) * (code @ code.T)).sum())
    return 0.5 * fit + alpha * float(code.abs().sum())


def sparse_pca(x: torch.Tensor, n_components: int, alpha: float = 1.0, ridge_alpha: float = 0.01,
               max_iter: int = 1000, tol: float = 1e-6, seed: int = 42) -> Fit:
    """Sparse PCA of the column-centred ``x`` [n_rows, n_columns] (sklearn ``SparsePCA`` objective)."""
    x = x.double()
    generator = torch.Generator().manual_seed(seed)
    n_components = min(n_components, x.shape[0], x.shape[1])
    u, s, vt = torch.linalg.svd(x, full_matrices=False)
    # Directions beyond the numerical rank start as exact zeros (their noise differs by machine).
    s = positive_part(s, rank_cutoff(s[:1], tuple(x.shape)))
    vt = vt * (s > 0)[:, None]
    # sklearn flips the start so that the largest entry of each code column is positive
    signs = torch.sign(vt[torch.arange(vt.shape[0]), vt.abs().argmax(dim=1)])
    signs[signs == 0] = 1
    dictionary = (u * (s * signs))[:, :n_components].contiguous()
    code = (vt * signs[:, None])[:n_components].contiguous()
    x_sq = float((x**2).sum())
    costs = []
    for _ in range(max_iter):
        code = _sparse_code(dictionary.T @ dictionary, dictionary.T @ x, code, alpha)
        _update_dictionary(dictionary, x, code, generator)
        costs.append(_cost(x_sq, x, dictionary, code, alpha))
        if len(costs) > 1 and costs[-2] - costs[-1] < tol * costs[-1]:
            break
    norms = code.norm(dim=1, keepdim=True)
    components = code / torch.where(norms > 0, norms, torch.ones_like(norms))
    # Pseudo-inverse: with ridge_alpha = 0 and a component that fell to zero, the matrix is singular.
    scores = x @ components.T @ torch.linalg.pinv(components @ components.T + ridge_alpha * torch.eye(
        n_components, dtype=x.dtype, device=x.device), hermitian=True)
    variance = scores.var(dim=0, unbiased=True).cpu().numpy()
    return Fit(components.float().cpu().numpy(), scores.cpu().numpy(), ["sparse"] * n_components,
               variance, _ratio(variance, _total_variance(x)),
               (components == 0).double().mean(dim=1).cpu().numpy(), len(costs), costs[-1] if costs else float("nan"))


def hybrid(x: torch.Tensor, n_components: int, n_sparse: int, **sparse_options) -> Fit:
    """PCA with ``n_components``, then sparse PCA with ``n_sparse`` of the residual X_c − scores · components;
    explained variance ratios are over the total variance of X_c."""
    dense = pca(x, n_components)
    residual = x.double() - torch.as_tensor(dense.scores, device=x.device) @ torch.as_tensor(
        dense.components, dtype=torch.float64, device=x.device)
    sparse = sparse_pca(residual, n_sparse, **sparse_options)
    ratio = _ratio(sparse.explained_variance, _total_variance(x))
    return Fit(np.concatenate([dense.components, sparse.components]), np.concatenate([dense.scores, sparse.scores], 1),
               dense.methods + sparse.methods, np.concatenate([dense.explained_variance, sparse.explained_variance]),
               np.concatenate([dense.explained_variance_ratio, ratio]), np.concatenate([dense.sparsity, sparse.sparsity]),
               sparse.n_iter, sparse.cost)


def orient(fit: Fit, reference_row: int) -> Fit:
    """Flip components (and their scores) so that row ``reference_row`` scores ≥ 0 on each
    (the largest model's first checkpoint, as the reference code does): re-runs compare."""
    signs = np.where(fit.scores[reference_row] < 0, -1.0, 1.0)
    fit.scores = fit.scores * signs
    fit.components = fit.components * signs[:, None].astype(fit.components.dtype)
    return fit
