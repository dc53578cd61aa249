"""Benchmark: the exact gradient-similarity matrix of quanta discovery against the reference
procedure (one forward+backward per token, recomputed for every block pair, as the
quanta-discovery scripts do), on the same tokens and model shape, in one run; plus the
CountSketch approximation and its error against the exact matrix.

    python bench/quanta.py                      # CPU: a small GPT-NeoX, 192 tokens
    python bench/quanta.py --device cuda --shape pythia-70m --n-tokens 10000 --doc-len 1024 \
        --reference-tokens 256 --grad-dtype bfloat16 --sketch 16384

The reference is timed on --reference-tokens tokens and extrapolated to n tokens by its
backward count when the full run would take over 10 minutes (the output says so).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quanta_db.demo.toy_models import gpt_neox_config, pythia_config, random_model  # noqa: E402
from quanta_db.results.quanta.gradient_cosine import (  # noqa: E402
    BATCH_TOKENS,
    exact_cosine,
    gradient_rows,
    sketched_cosine,
)
from quanta_db.results.quanta.gradients import select_parameters, single_token_gradient  # noqa: E402
from quanta_db.results.quanta.job import block_tokens, gradient_computations  # noqa: E402

REFERENCE_LIMIT_S = 600


def reference_backwards(n: int, block: int) -> int:
    """Backward passes of the reference: every block pair (i <= j) recomputes both blocks."""
    blocks = math.ceil(n / block)
    return sum((block if i == j else 2 * block) for i in range(blocks) for j in range(i, blocks))


def reference_similarity(model, params, sequences, tokens, device, block: int) -> tuple[np.ndarray, float]:
    n = len(tokens)
    result = np.zeros((n, n), dtype=np.float32)
    start = time.perf_counter()
    ranges = [range(s, min(s + block, n)) for s in range(0, n, block)]

    def grads(rows):
        return torch.nn.functional.normalize(torch.stack(
            [single_token_gradient(model, params, sequences[tokens[r][0]], tokens[r][1], device) for r in rows]), dim=1)

    for i, rows_i in enumerate(ranges):
        for rows_j in ranges[i:]:
            g_i = grads(rows_i)
            g_j = g_i if rows_j == rows_i else grads(rows_j)
            block_cos = (g_i @ g_j.T).cpu().numpy()
            result[np.ix_(list(rows_i), list(rows_j))] = block_cos
            result[np.ix_(list(rows_j), list(rows_i))] = block_cos.T
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="tiny", help="tiny (d=128, 4 layers) or a Pythia shape")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-tokens", type=int, default=192)
    parser.add_argument("--doc-len", type=int, default=256)
    parser.add_argument("--tokens-per-doc", type=int, default=8)
    parser.add_argument("--reference-block", type=int, default=48)
    parser.add_argument("--reference-tokens", type=int, default=None, help="Time the reference on this many tokens.")
    parser.add_argument("--exact-tokens", type=int, default=None,
                        help="Time the exact matrix on this many tokens and extrapolate by gradient computations.")
    parser.add_argument("--grad-dtype", default="float32")
    parser.add_argument("--grad-memory-gb", type=float, default=None)
    parser.add_argument("--sketch", type=int, default=4096)
    parser.add_argument("--batch-tokens", type=int, default=BATCH_TOKENS,
                        help="Tokens per forward + batched backward, across documents.")
    parser.add_argument("--batching-tokens", type=int, default=64,
                        help="Tokens timed for batching across documents against one document at a time.")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = gpt_neox_config(1024, 128, 4, 4, n_ctx=args.doc_len) if args.shape == "tiny" else pythia_config(args.shape)
    model = random_model(config).to(device)
    params = select_parameters(model)
    n_numbers = sum(p.numel() for _, p in params)
    rng = np.random.default_rng(0)
    n_docs = math.ceil(args.n_tokens / args.tokens_per_doc)
    sequences = [rng.integers(0, config.vocab_size, size=args.doc_len) for _ in range(n_docs)]
    tokens = [(d, int(p)) for d in range(n_docs)
              for p in sorted(rng.choice(np.arange(1, args.doc_len), args.tokens_per_doc, replace=False))]
    tokens = tokens[: args.n_tokens]
    storage = getattr(torch, args.grad_dtype)
    block = block_tokens(n_numbers, storage, device, args.grad_memory_gb)
    print(f"{args.shape}: {n_numbers:,} gradient numbers per token, {len(tokens)} tokens, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))

    def rows_seconds(batch_tokens: int) -> float:
        start = time.perf_counter()
        gradient_rows(model, params, sequences, tokens[: args.batching_tokens], device, batch_tokens=batch_tokens)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    rows_seconds(args.batch_tokens)  # warm-up
    per_document_s, across_s = rows_seconds(1), rows_seconds(args.batch_tokens)  # before (one document at a time) / now

    n_exact = args.exact_tokens or len(tokens)
    start = time.perf_counter()
    exact = exact_cosine(model, params, sequences, tokens[:n_exact], device, block, storage)
    if device.type == "cuda":
        torch.cuda.synchronize()
    ours = (time.perf_counter() - start) * (gradient_computations(len(tokens), block)
                                            / gradient_computations(n_exact, block))

    start = time.perf_counter()
    sketch = sketched_cosine(model, params, sequences, tokens, device, args.sketch, seed=0)
    sketch_s = time.perf_counter() - start

    n_ref = min(args.reference_tokens or len(tokens), n_exact)
    reference, ref_s = reference_similarity(model, params, sequences, tokens[:n_ref], device, args.reference_block)
    per_backward = ref_s / reference_backwards(n_ref, args.reference_block)
    full_ref_s = per_backward * reference_backwards(len(tokens), args.reference_block)
    extrapolated = n_ref < len(tokens)
    agreement = np.abs(exact[:n_ref, :n_ref] - reference).max()
    off_diagonal = ~np.eye(len(tokens), dtype=bool)
    error = np.abs(sketch[:n_exact, :n_exact] - exact)[off_diagonal[:n_exact, :n_exact]]
    print("| method | seconds | vs reference |")
    print("|---|---|---|")
    print(f"| reference (block {args.reference_block}, {reference_backwards(len(tokens), args.reference_block):,} "
          f"backwards) | {full_ref_s:.1f}{f' (extrapolated from {n_ref} tokens)' if extrapolated else ''} | 1.0x |")
    extrapolated_exact = f" (extrapolated from {n_exact} tokens)" if n_exact < len(tokens) else ""
    print(f"| exact, blocks of {block} rows, {args.grad_dtype} storage | {ours:.1f}{extrapolated_exact} "
          f"| {full_ref_s / ours:.1f}x |")
    print(f"| sketch {args.sketch} | {sketch_s:.1f} | {full_ref_s / sketch_s:.1f}x |")
    print(f"exact vs reference: max |diff| {agreement:.2e}; sketch vs exact: mean |err| {error.mean():.4f}, "
          f"max {error.max():.4f}")
    print(json.dumps({"benchmark": "quanta", "device": str(device), "shape": args.shape, "tokens": len(tokens),
                      "tokens_per_doc": args.tokens_per_doc, "reference_s": round(full_ref_s, 2),
                      "reference_extrapolated": extrapolated, "exact_s": round(ours, 2),
                      "exact_extrapolated": n_exact < len(tokens), "sketch_s": round(sketch_s, 2),
                      "ratio_exact": round(full_ref_s / ours, 2), "ratio_sketch": round(full_ref_s / sketch_s, 2),
                      "exact_max_abs_diff": float(agreement), "sketch_mean_abs_err": float(error.mean()),
                      "batching_tokens": min(args.batching_tokens, len(tokens)), "batch_tokens": args.batch_tokens,
                      "per_document_rows_s": round(per_document_s, 3), "batched_rows_s": round(across_s, 3),
                      "ratio_batching": round(per_document_s / across_s, 2)}))


if __name__ == "__main__":
    main()
