"""Length-sorted batching of token sequences, and running batches with out-of-memory halving.

Sequences are right-padded to the longest in their batch. Under causal attention a real token
never attends to a later padding token and positions count from 0 at the left edge, so the
activations of real tokens equal those of the sequence alone and no attention mask is needed
(which keeps SDPA on its fused causal path).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch


def plan_batches(lengths: np.ndarray, token_budget: int, min_length: int = 2) -> list[np.ndarray]:
    """Group sequence indices into batches of at most ``token_budget`` padded tokens.

    Sequences are sorted longest first, so each batch pads to its first sequence and padding
    is small; those shorter than ``min_length`` are left out.
    """
    lengths = np.asarray(lengths)
    order = np.argsort(-lengths, kind="stable")
    order = order[lengths[order] >= min_length]
    batches, start = [], 0
    while start < len(order):
        rows = max(1, token_budget // int(lengths[order[start]]))
        batches.append(order[start:start + rows])
        start += rows
    return batches


def pad_batch(sequences: list[np.ndarray]) -> torch.Tensor:
    """[batch, longest] int64 token ids, right-padded with 0."""
    width = max(len(s) for s in sequences)
    ids = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = seq
    return torch.from_numpy(ids)


def run_batches(batches: Iterable[np.ndarray], run: Callable[[np.ndarray], object]):
    """Yield ``(batch, run(batch))`` for each batch; a batch that runs out of device memory is
    split in halves and retried (a single sequence that does not fit re-raises)."""
    queue = list(batches)
    while queue:
        batch = queue.pop(0)
        try:
            result = run(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = len(batch) // 2
            queue[:0] = [batch[:half], batch[half:]]
            continue
        yield batch, result
