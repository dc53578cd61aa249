"""Per-token next-token losses of a right-padded batch of documents.

For a document x_0..x_{L-1} the loss at position p (1 <= p < L) is
``-log softmax(f(x_0..x_{p-1}))[x_p]`` in nats. Right padding cannot change a real token's
logits under causal attention (see :mod:`quanta_db.runtime.batching`); only real positions
are scored.
"""

from __future__ import annotations

import numpy as np
import torch

from quanta_db.runtime.batching import pad_batch

# Positions unembedded at once: [chunk, vocab] float32 logits. Large chunks keep a GPU busy;
# on a CPU a smaller chunk stays in cache (1024 x 50304 x 4 B = 200 MB).
LOGIT_CHUNK_TOKENS = {"cuda": 8192, "cpu": 1024}


@torch.inference_mode()
def launch_batch_losses(model, sequences: list[np.ndarray], device) -> PendingLosses:
    """Start the losses of positions 1..L-1 of each sequence; on CUDA the work and the copy of the
    result to pinned host memory are queued without waiting, so the caller can prepare the next
    batch meanwhile. :meth:`PendingLosses.result` waits and splits per sequence.

    The unembedding runs over real positions only, in chunks, with log-softmax in float32:
    the full [batch, length, vocab] logits tensor is never built.
    """
    device = torch.device(device)
    ids = pad_batch(sequences)
    if device.type == "cuda":
        ids = ids.pin_memory()
    ids = ids.to(device, non_blocking=True)
    lengths = torch.tensor([len(s) for s in sequences]).to(device, non_blocking=True)
    hidden = model.base_model(input_ids=ids).last_hidden_state[:, :-1]
    real = torch.arange(ids.shape[1] - 1, device=device)[None, :] < (lengths - 1)[:, None]
    hidden = hidden[real]
    targets = ids[:, 1:][real]
    head = model.get_output_embeddings()
    losses = torch.empty(targets.shape[0], dtype=torch.float32, device=device)
    chunk = LOGIT_CHUNK_TOKENS.get(device.type, 1024)
    for start in range(0, targets.shape[0], chunk):
        logits = head(hidden[start:start + chunk]).float()
        losses[start:start + chunk] = torch.nn.functional.cross_entropy(
            logits, targets[start:start + chunk], reduction="none"
        )
    return PendingLosses(losses, [len(s) - 1 for s in sequences])


class PendingLosses:
    """Losses on their way to host memory: one copy per batch, waited for only when needed."""

    def __init__(self, losses: torch.Tensor, counts: list[int]):
        self.counts = counts
        if losses.device.type == "cuda":
            self.host = torch.empty(losses.shape, dtype=losses.dtype, pin_memory=True)
            self.host.copy_(losses, non_blocking=True)
            self.done = torch.cuda.Event()
            self.done.record()
        else:
            self.host, self.done = losses, None

    def result(self) -> list[np.ndarray]:
        if self.done is not None:
            self.done.synchronize()
        return np.split(self.host.numpy(), np.cumsum(self.counts)[:-1])


def batch_token_losses(model, sequences: list[np.ndarray], device) -> list[np.ndarray]:
    """Loss (nats, float32) of positions 1..L-1 of each sequence, one array per sequence."""
    return launch_batch_losses(model, sequences, device).result()
