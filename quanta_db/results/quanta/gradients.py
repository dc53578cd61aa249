"""Per-token loss gradients (quanta discovery, Michaud et al.).

The gradient of token p is d loss_p / d theta, where loss_p is the next-token loss of token p
given tokens 0..p-1 of its document, and theta are the model's parameters except the token
embedding, the unembedding and the per-layer LayerNorms (in GPT-NeoX names: drop
``embed_in``, ``embed_out`` / ``lm_head`` and every ``*layernorm*``; ``final_layer_norm``
stays). For pythia-70m that is 18,903,040 numbers per token.

All selected tokens of a document share one forward pass; their gradients come from one
batched backward (``torch.autograd.grad(..., is_grads_batched=True)``, a vmap over the
backward), falling back to one backward per token on the same graph when an operation has no
batching rule.
"""

from __future__ import annotations

import numpy as np
import torch

DEFAULT_EXCLUDE = ("embed_in", "embed_out", "lm_head", "layernorm")


def select_parameters(model, exclude: tuple[str, ...] = DEFAULT_EXCLUDE) -> list[tuple[str, torch.nn.Parameter]]:
    """Named parameters whose name contains none of the ``exclude`` substrings."""
    chosen = [(name, p) for name, p in model.named_parameters() if not any(e in name for e in exclude)]
    if not chosen:
        raise ValueError(f"no parameter is left after excluding {exclude}")
    return chosen


def n_gradient_numbers(params) -> int:
    return sum(p.numel() for _, p in params)


def document_token_losses(model, ids: torch.Tensor, positions: list[int]) -> torch.Tensor:
    """Losses (with graph) of the given positions (each >= 1) of one document ``ids`` [T]."""
    end = max(positions) + 1
    logits = model(input_ids=ids[None, :end]).logits[0]
    targets = torch.as_tensor(positions, device=ids.device)
    return torch.nn.functional.cross_entropy(logits[targets - 1].float(), ids[targets], reduction="none")


def document_gradients(model, params, ids: np.ndarray, positions: list[int], device) -> torch.Tensor:
    """Flattened gradients [len(positions), P] (float32) of the tokens at ``positions``."""
    tensors = [p for _, p in params]
    ids_t = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)
    with torch.enable_grad():
        losses = document_token_losses(model, ids_t, positions)
        k = len(positions)
        try:
            grads = torch.autograd.grad(losses, tensors, grad_outputs=torch.eye(k, device=device),
                                        is_grads_batched=True, retain_graph=True)
            flat = torch.cat([g.reshape(k, -1) for g in grads], dim=1)
        except RuntimeError:
            rows = []
            for i in range(k):
                grads = torch.autograd.grad(losses[i], tensors, retain_graph=i < k - 1)
                rows.append(torch.cat([g.reshape(-1) for g in grads]))
            flat = torch.stack(rows)
    return flat.float()


def single_token_gradient(model, params, ids: np.ndarray, position: int, device) -> torch.Tensor:
    """The reference way: one forward and one backward for one token's loss."""
    tensors = [p for _, p in params]
    ids_t = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)
    with torch.enable_grad():
        loss = document_token_losses(model, ids_t, [position])[0]
        grads = torch.autograd.grad(loss, tensors)
    return torch.cat([g.reshape(-1) for g in grads]).float()
