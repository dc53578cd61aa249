"""Cosine similarity of per-token gradients: exact (blockwise) or sketched.

Exact: C[i, j] = <g_i, g_j> / (|g_i| |g_j|) over the flattened gradients, accumulated in
float32. Gradients are computed in blocks that fit a memory budget; with B blocks, block i
is computed once and kept while blocks j > i are computed and multiplied against it, so
each gradient is computed at most (B + 1) / 2 times on average (once when all fit), against
once per block pair per token for the reference procedure.

Sketch: a CountSketch (sparse JL with one nonzero per coordinate, Charikar et al. 2002):
coordinate k goes to bucket h(k) with sign s(k) from a seeded generator, so
E[<S g, S g'>] = <g, g'> with variance O(|g|^2 |g'|^2 / dim). Each gradient is computed once
and only its sketch is kept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from quanta_db.results.quanta.gradients import batch_gradients

TokenList = list[tuple[int, int]]  # (index into sequences, position)
# Tokens whose gradients are computed together, across documents, on a GPU. On CPU, documents go
# one at a time: vmapping them measured no faster there (1.04x at 2 tokens per document, 0.77x at
# 4; bench/quanta.py), as a CPU gains nothing from wider kernels.
BATCH_TOKENS = 32


def _by_document(tokens: TokenList):
    """Runs of consecutive tokens from the same document: (doc index, positions, row indices)."""
    start = 0
    while start < len(tokens):
        end = start
        while end < len(tokens) and tokens[end][0] == tokens[start][0]:
            end += 1
        yield tokens[start][0], [pos for _, pos in tokens[start:end]], range(start, end)
        start = end


def _batches(tokens: TokenList, batch_tokens: int):
    """Consecutive documents grouped until a group holds ``batch_tokens`` tokens (a document with
    more stays whole): (documents as (doc index, positions), row range)."""
    group, first, count = [], 0, 0
    for doc, positions, rows in _by_document(tokens):
        if group and count + len(positions) > batch_tokens:
            yield group, range(first, rows.start)
            group, first, count = [], rows.start, 0
        group.append((doc, positions))
        count += len(positions)
    if group:
        yield group, range(first, len(tokens))


def gradient_rows(model, params, sequences, tokens: TokenList, device, transform: Callable | None = None,
                  storage_dtype=torch.float32, on_row: Callable[[int], None] | None = None,
                  batch_tokens: int | None = None) -> torch.Tensor:
    """Unit-normalised gradient rows (or their ``transform``) of ``tokens``, in order.

    Tokens of consecutive documents share a forward pass and a batched backward, up to
    ``batch_tokens`` at a time; the output is allocated once and filled batch by batch, so a
    block never needs twice its size in memory.
    """
    if batch_tokens is None:
        batch_tokens = BATCH_TOKENS if torch.device(device).type == "cuda" else 1
    out = None
    for documents, rows in _batches(tokens, batch_tokens):
        grads = batch_gradients(model, params, [(sequences[doc], positions) for doc, positions in documents], device)
        grads = torch.nn.functional.normalize(grads, dim=1)
        if transform is not None:
            grads = transform(grads)
        if out is None:
            out = torch.empty(len(tokens), grads.shape[1], dtype=storage_dtype, device=grads.device)
        out[rows.start:rows.stop] = grads.to(storage_dtype)
        del grads
        if on_row:
            on_row(len(rows))
    return out


def gram(a: torch.Tensor, b: torch.Tensor, chunk_bytes: int = 1 << 28) -> torch.Tensor:
    """a @ b.T accumulated in float32 (half-precision storage is upcast chunk by chunk).

    Each upcast chunk holds at most ``chunk_bytes`` per operand, so the temporaries stay small
    next to the gradient blocks the memory budget was planned for.
    """
    if a.dtype == torch.float32 and b.dtype == torch.float32:
        return a @ b.T
    column_chunk = max(1, chunk_bytes // (4 * max(a.shape[0], b.shape[0])))
    out = torch.zeros(a.shape[0], b.shape[0], dtype=torch.float32, device=a.device)
    for start in range(0, a.shape[1], column_chunk):
        out += a[:, start:start + column_chunk].float() @ b[:, start:start + column_chunk].float().T
    return out


def exact_cosine(model, params, sequences, tokens: TokenList, device, block_tokens: int,
                 storage_dtype=torch.float32, on_row=None, resume_dir: Path | None = None) -> np.ndarray:
    """The exact N x N cosine matrix, blockwise under a memory budget of ``block_tokens`` rows.

    With ``resume_dir``, the matrix is saved there after each finished block row, and a later
    call with the same tokens and block size continues from the first unfinished block row.
    """
    n = len(tokens)
    blocks = [list(range(s, min(s + block_tokens, n))) for s in range(0, n, block_tokens)]
    result, first_block = _resume(resume_dir, n, block_tokens)
    for i, rows_i in enumerate(blocks):
        if i < first_block:
            continue
        g_i = gradient_rows(model, params, sequences, [tokens[r] for r in rows_i], device,
                            storage_dtype=storage_dtype, on_row=on_row)
        result[np.ix_(rows_i, rows_i)] = gram(g_i, g_i).cpu().numpy()
        for rows_j in blocks[i + 1:]:
            g_j = gradient_rows(model, params, sequences, [tokens[r] for r in rows_j], device,
                                storage_dtype=storage_dtype, on_row=on_row)
            block = gram(g_i, g_j).cpu().numpy()
            result[np.ix_(rows_i, rows_j)] = block
            result[np.ix_(rows_j, rows_i)] = block.T
            del g_j
        del g_i
        _save_progress(resume_dir, result, block_tokens, i + 1)
    return result


def _resume(resume_dir: Path | None, n: int, block_tokens: int) -> tuple[np.ndarray, int]:
    """(matrix so far, first block row to compute) from an earlier interrupted call, if any."""
    if resume_dir is not None and (resume_dir / "progress.json").exists():
        progress = json.loads((resume_dir / "progress.json").read_text())
        if progress["n"] == n and progress["block_tokens"] == block_tokens:
            return np.load(resume_dir / "partial.npy"), progress["blocks_done"]
    return np.zeros((n, n), dtype=np.float32), 0


def _save_progress(resume_dir: Path | None, result: np.ndarray, block_tokens: int, blocks_done: int) -> None:
    if resume_dir is None:
        return
    resume_dir.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a crash mid-save leaves the previous state intact.
    np.save(resume_dir / "partial.tmp.npy", result)
    os.replace(resume_dir / "partial.tmp.npy", resume_dir / "partial.npy")
    progress = {"n": result.shape[0], "block_tokens": block_tokens, "blocks_done": blocks_done}
    (resume_dir / "progress.tmp.json").write_text(json.dumps(progress))
    os.replace(resume_dir / "progress.tmp.json", resume_dir / "progress.json")


class CountSketch:
    """Seeded CountSketch of R^P into R^dim."""

    def __init__(self, n_in: int, dim: int, seed: int, device):
        generator = torch.Generator(device="cpu").manual_seed(seed)
        self.bucket = torch.randint(0, dim, (n_in,), generator=generator).to(device)
        self.sign = (torch.randint(0, 2, (n_in,), generator=generator) * 2 - 1).float().to(device)
        self.dim = dim

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(rows.shape[0], self.dim, dtype=torch.float32, device=rows.device)
        return out.index_add_(1, self.bucket, rows * self.sign)


def sketched_rows(model, params, sequences, tokens: TokenList, device, dim: int, seed: int,
                  on_row=None, batch_tokens: int | None = None) -> torch.Tensor:
    """Unit-normalised CountSketch projections of the tokens' gradients (each computed once), one
    row a token: rows of disjoint shards of the tokens stack into those of all of them."""
    n_in = sum(p.numel() for _, p in params)
    sketch = CountSketch(n_in, dim, seed, device)
    rows = gradient_rows(model, params, sequences, tokens, device, transform=sketch, on_row=on_row,
                         batch_tokens=batch_tokens)
    return torch.nn.functional.normalize(rows, dim=1)


def sketched_cosine(model, params, sequences, tokens: TokenList, device, dim: int, seed: int,
                    on_row=None, batch_tokens: int | None = None) -> np.ndarray:
    """Cosine matrix of CountSketch-projected gradients (each gradient computed once)."""
    rows = sketched_rows(model, params, sequences, tokens, device, dim, seed, on_row, batch_tokens)
    return (rows @ rows.T).cpu().numpy()
