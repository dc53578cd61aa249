"""Streaming a model's activations at hook points over token sequences, in length-sorted batches.

Each batch yields the activations of its real tokens only (padding dropped), flattened to
[tokens, width] (``attn.hook_z`` as n_heads · d_head, ``attn.hook_result`` as n_heads · d_model),
with the global index of every token: the documents' tokens numbered in corpus order, so
statistics can point back at ``(doc_id, pos)``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from quanta_db.errors import InputError
from quanta_db.runtime.batching import pad_batch, plan_batches, run_batches
from quanta_db.runtime.hooks import activations_until, parse_hook_name, transformer_layers


def hook_width(lm, hook_name: str) -> int:
    """Width of the flattened activation at ``hook_name`` (a hook the model lacks: one line)."""
    config = lm.config
    hook = parse_hook_name(hook_name, len(transformer_layers(lm)))
    if hook.point == "attn.hook_result":
        return config.num_attention_heads * config.hidden_size
    return config.hidden_size  # hook_z: n_heads · d_head = hidden_size in GPT-NeoX


def document_starts(sequences) -> np.ndarray:
    """Global index of each document's first token."""
    return np.r_[0, np.cumsum([len(s) for s in sequences])[:-1]].astype(np.int64)


def flatten_heads(acts: torch.Tensor, hook_name: str) -> torch.Tensor:
    return acts.flatten(-2) if hook_name.endswith(("hook_z", "hook_result")) else acts


@torch.no_grad()
def batch_activations(lm, chosen: list[np.ndarray], hook_names: list[str], device) -> dict[str, torch.Tensor]:
    """``{hook: [T, width]}`` of the real tokens of one batch of sequences (right-padded, padding
    dropped), in the model's dtype, on ``device``."""
    ids = pad_batch(chosen).to(device)
    captured = activations_until(lm, ids, list(hook_names))
    lengths = torch.tensor([len(s) for s in chosen], device=ids.device)
    real = torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]
    return {name: flatten_heads(captured[name], name)[real] for name in hook_names}


@torch.no_grad()
def stream_activations(lm, sequences: list[np.ndarray], hook_names: list[str], device, token_budget: int,
                       progress: bool = False, desc: str = "activations") -> Iterator[tuple[dict, torch.Tensor]]:
    """Yield ``({hook: [T, width] float32 on device}, token_index [T] int64)`` per batch, for
    every token of ``sequences`` (each cut to the model's context); non-finite activations are a
    one-line error."""
    n_ctx = lm.config.max_position_embeddings
    starts = document_starts(sequences)
    cut = [s[:n_ctx] for s in sequences]
    batches = plan_batches(np.array([len(s) for s in cut]), token_budget, min_length=1)
    with tqdm(total=sum(len(s) for s in cut), unit="tok", unit_scale=True, disable=not progress, desc=desc) as bar:
        def one_batch(batch):
            acts = {name: x.float() for name, x in batch_activations(lm, [cut[i] for i in batch], hook_names,
                                                                      device).items()}
            for name, x in acts.items():
                if not bool(torch.isfinite(x).all()):
                    raise InputError(f"activations at {name} are not finite (NaN/inf); check the model's dtype "
                                     "and weights")
            index = torch.from_numpy(np.concatenate([starts[i] + np.arange(len(cut[i])) for i in batch]))
            return acts, index

        for _, (acts, index) in run_batches(batches, one_batch):
            bar.update(len(index))
            yield acts, index
