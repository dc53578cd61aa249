"""Classical dictionaries as sae-lens SAE classes, so every SAE job reads them unchanged.

Architectures ``pca``, ``ica`` and ``nmf`` are registered with sae-lens's own registry
(``sae_lens.registry.register_sae_class``); a fitted dictionary is saved with ``save_model``
and loads back through ``SAE.load_from_disk`` like any user's SAE (:func:`register`, which
``load_sae`` calls, must run first in a process).

- pca, ica: codes f = (x − b_dec) W_enc, reconstruction x̂ = f W_dec + b_dec — scikit-learn's
  ``PCA.transform`` / ``inverse_transform`` (W_enc = components_ᵀ, W_dec = components_, b_dec =
  mean_) and ``FastICA.transform`` / ``inverse_transform`` (W_enc = components_ᵀ, W_dec =
  mixing_ᵀ, b_dec = mean_).
- nmf: on x − b_dec with b_dec the per-dimension minimum over the fit tokens (a shift that makes
  the fit matrix non-negative); the codes of a token are the non-negative least-squares solution
  f = argmin_{f ≥ 0} ‖max(x − b_dec, 0) − f W_dec‖² (what ``NMF.transform`` solves, here by
  FISTA on the device), x̂ = f W_dec + b_dec.

L0 of dense codes: the codes of PCA and ICA are signed and almost never exactly zero, and NMF's
iterative solution leaves tiny positives, so for these dictionaries a code counts as active on a
token when |f_i| > ``l0_threshold`` · max_j |f_j| (relative to the token's largest code; 0.1 by
default, kept in the config), and its activation is |f_i|. :meth:`active_codes` gives that
view; reconstruction and every loss use the exact codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ARCHITECTURES = ("pca", "ica", "nmf")
DEFAULT_L0_THRESHOLD = 0.1
NNLS_MAX_ITER = 2000
NNLS_TOLERANCE = 1e-7


def _sae_classes():
    from sae_lens.saes.sae import SAE, SAEConfig

    @dataclass
    class DictionaryConfig(SAEConfig):
        l0_threshold: float = DEFAULT_L0_THRESHOLD

        @classmethod
        def architecture(cls) -> str:  # overridden per method below
            raise NotImplementedError

    class LinearDictionary(SAE):
        """PCA / ICA: an affine encoder and decoder, no nonlinearity."""

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return self.hook_sae_acts_post(self.hook_sae_acts_pre(self.process_sae_in(x) @ self.W_enc))

        def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
            out = self.hook_sae_recons(feature_acts @ self.W_dec + self.b_dec)
            return self.reshape_fn_out(self.run_time_activation_norm_fn_out(out), self.d_head)

        def active_codes(self, feature_acts: torch.Tensor) -> torch.Tensor:
            return relative_active(feature_acts, self.cfg.l0_threshold)

    class NMFDictionary(LinearDictionary):
        """NMF: codes by non-negative least squares against the decoder rows."""

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            shifted = self.process_sae_in(x).clamp(min=0)
            return self.hook_sae_acts_post(nnls(shifted, self.W_dec))

    classes = {}
    for method, sae_class in (("pca", LinearDictionary), ("ica", LinearDictionary), ("nmf", NMFDictionary)):
        config_class = dataclass(type(f"{method.upper()}DictionaryConfig", (DictionaryConfig,),
                                      {"architecture": classmethod(lambda cls, m=method: m)}))
        model_class = type(f"{method.upper()}Dictionary", (sae_class,), {})
        classes[method] = (model_class, config_class)
    return classes


_CLASSES: dict = {}


def register() -> dict:
    """Register the dictionary architectures with sae-lens (once per process); method →
    (SAE class, config class)."""
    from sae_lens.registry import SAE_CLASS_REGISTRY, register_sae_class

    if not _CLASSES:
        _CLASSES.update(_sae_classes())
    for method, (model_class, config_class) in _CLASSES.items():
        if method not in SAE_CLASS_REGISTRY:
            register_sae_class(method, model_class, config_class)
    return _CLASSES


def build(method: str, w_enc, w_dec, b_dec, hook_name: str, model_name: str, l0_threshold: float,
          fit: dict):
    """A dictionary SAE with these weights (numpy or torch, [d_in, K], [K, d_in], [d_in]) and the
    fit's description in its metadata."""
    from sae_lens.saes.sae import SAEMetadata

    model_class, config_class = register()[method]
    w_enc, w_dec, b_dec = (torch.as_tensor(a, dtype=torch.float32).cpu() for a in (w_enc, w_dec, b_dec))
    config = config_class(d_in=w_dec.shape[1], d_sae=w_dec.shape[0], l0_threshold=l0_threshold,
                          apply_b_dec_to_input=True,
                          metadata=SAEMetadata(hook_name=hook_name, model_name=model_name, quanta_db_fit=fit))
    sae = model_class(config)
    sae.load_state_dict({"W_enc": w_enc.contiguous(), "W_dec": w_dec.contiguous(), "b_dec": b_dec.contiguous()})
    return sae.eval()


def relative_active(codes: torch.Tensor, threshold: float) -> torch.Tensor:
    """|f_i| where |f_i| > threshold · max_j |f_j| of its row, else 0."""
    magnitude = codes.abs()
    largest = magnitude.max(dim=-1, keepdim=True).values
    return torch.where(magnitude > threshold * largest, magnitude, torch.zeros_like(magnitude))


def active_codes(sae, feature_acts: torch.Tensor) -> torch.Tensor:
    """The activations statistics count: the dictionary's own view of dense codes, or the SAE's
    activations as they are."""
    view = getattr(sae, "active_codes", None)
    return feature_acts if view is None else view(feature_acts)


@torch.no_grad()
def nnls(targets: torch.Tensor, basis: torch.Tensor, max_iter: int = NNLS_MAX_ITER,
         tolerance: float = NNLS_TOLERANCE) -> torch.Tensor:
    """argmin_{F ≥ 0} ‖targets − F basis‖²_F row by row ([T, d] and [K, d] → [T, K]) by FISTA
    (Beck & Teboulle 2009) with step 1/L, L = λ_max(basis basisᵀ), started from the clamped
    least-squares solution; stops when no code moves by more than ``tolerance`` × the largest.

    The problem is convex, so this converges to the unique optimum when the basis has full row
    rank (as scipy.optimize.nnls finds it exactly; the tests compare)."""
    dtype, shape = targets.dtype, targets.shape
    x, h = targets.reshape(-1, shape[-1]).double(), basis.double()
    gram = h @ h.T
    lipschitz = float(torch.linalg.eigvalsh(gram)[-1])
    if lipschitz <= 0:
        return torch.zeros(*shape[:-1], h.shape[0], dtype=dtype, device=x.device)
    cross = x @ h.T
    codes = (cross @ torch.linalg.pinv(gram, hermitian=True)).clamp(min=0)
    momentum, t = codes.clone(), 1.0
    for iteration in range(max_iter):
        updated = (momentum - (momentum @ gram - cross) / lipschitz).clamp(min=0)
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        momentum = updated + (t - 1) / t_next * (updated - codes)
        # read back to the host every 10 iterations only: each read waits for the device
        done = iteration % 10 == 9 and codes.numel() and \
            float((updated - codes).abs().max()) <= tolerance * max(float(updated.abs().max()), 1e-30)
        codes, t = updated, t_next
        if done:
            break
    return codes.reshape(*shape[:-1], -1).to(dtype)
