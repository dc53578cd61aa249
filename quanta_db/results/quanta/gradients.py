"""Per-token loss gradients (quanta discovery, Michaud et al.).

The gradient of token p is d loss_p / d theta, where loss_p is the next-token loss of token p
given tokens 0..p-1 of its document, and theta are the model's parameters except the token
embedding, the unembedding and the per-layer LayerNorms (in GPT-NeoX names: drop
``embed_in``, ``embed_out`` / ``lm_head`` and every ``*layernorm*``; ``final_layer_norm``
stays). For pythia-70m that is 18,903,040 numbers per token.

The selected tokens of one document share one forward pass and one batched backward
(``torch.autograd.grad(..., is_grads_batched=True)``, a vmap over the backward), falling back to
one backward per token on the same graph when an operation has no batching rule. The quanta
selection leaves a few tokens per document, so several documents are batched too: their
per-document Jacobians are vmapped across documents (``torch.func``), which keeps each token's
backward inside its own document (one backward over a right-padded batch would run every token's
backward through every document).
"""

from __future__ import annotations

import numpy as np
import torch

from quanta_db.results.quanta.params import DEFAULT_EXCLUDE


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
    return _one_document(model, params, ids, positions, device)


def _one_document(model, params, ids: np.ndarray, positions: list[int], device) -> torch.Tensor:
    """One forward over the document, one batched backward over its chosen tokens."""
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


def _across_documents(model, params, documents: list[tuple[np.ndarray, list[int]]], device) -> torch.Tensor:
    """Per-document Jacobians of the chosen tokens' losses, vmapped over the documents
    (``torch.func``): documents right-padded to one length, positions to one count (repeating a
    real one, dropped after). Unlike one backward over a padded batch — where every token's
    backward would run through every document — each token's backward covers its own document."""
    from torch.func import functional_call, jacrev, vmap

    from quanta_db.runtime.hooks import eager_attention

    names = [name for name, _ in params]
    length = max(max(positions) + 1 for _, positions in documents)
    width = max(len(positions) for _, positions in documents)
    ids = torch.zeros(len(documents), length, dtype=torch.int64)
    targets = torch.empty(len(documents), width, dtype=torch.int64)
    for row, (doc, positions) in enumerate(documents):
        end = min(length, len(doc))
        ids[row, :end] = torch.as_tensor(np.asarray(doc[:end], dtype=np.int64))
        targets[row] = torch.as_tensor(list(positions) + [positions[-1]] * (width - len(positions)))

    def losses(trainable, row_ids, row_targets):
        logits = functional_call(model, trainable, (row_ids[None],)).logits[0]
        return torch.nn.functional.cross_entropy(logits[row_targets - 1].float(), row_ids[row_targets],
                                                 reduction="none")

    trainable = {name: p.detach() for name, p in params}
    with torch.enable_grad(), eager_attention(model):  # SDPA's backward has no batching rule
        jacobians = vmap(jacrev(losses), in_dims=(None, 0, 0))(trainable, ids.to(device), targets.to(device))
    flat = torch.cat([jacobians[name].reshape(len(documents), width, -1) for name in names], dim=2)
    keep = [row * width + i for row, (_, positions) in enumerate(documents) for i in range(len(positions))]
    return flat.reshape(len(documents) * width, -1)[keep].detach().float()


def batch_gradients(model, params, documents: list[tuple[np.ndarray, list[int]]], device) -> torch.Tensor:
    """Flattened gradients [Σ len(positions), P] (float32) of the chosen tokens of ``documents``,
    in order: vmapped across documents, or one document at a time where an operation has no
    batching rule."""
    if len(documents) > 1:
        try:
            return _across_documents(model, params, documents, device)
        except (RuntimeError, NotImplementedError):
            pass
    return torch.cat([_one_document(model, params, doc, positions, device) for doc, positions in documents])


def single_token_gradient(model, params, ids: np.ndarray, position: int, device) -> torch.Tensor:
    """The reference way: one forward and one backward for one token's loss."""
    tensors = [p for _, p in params]
    ids_t = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=device)
    with torch.enable_grad():
        loss = document_token_losses(model, ids_t, [position])[0]
        grads = torch.autograd.grad(loss, tensors)
    return torch.cat([g.reshape(-1) for g in grads]).float()
