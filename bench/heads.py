"""Benchmark: per-token head metrics (DLA, mover attention, mover DLA), tokens/s, against the
reference way, in one run, with the largest difference between the two.

Ours: ``quanta_db.results.heads.token_metrics.head_token_metrics`` on the transformers model —
one forward pass, each layer's metrics computed in its hook from the pattern and the value
vectors, the unembedding indexed by the target tokens only.
Reference (the notebook's way): TransformerLens ``run_with_cache`` on a HookedTransformer with
the same (processed) weights, ``cache.stack_head_results(apply_ln=True)`` for every head's
output, an einsum with the target tokens' unembedding columns, and the mover terms from the
cached patterns and values.

    python bench/heads.py                                          # CPU, small shape
    python bench/heads.py --device cuda --shapes pythia-70m,pythia-410m --seq-len 1024 --batch 8

Random weights (speed does not depend on them); prints one JSON line per shape.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quanta_db.demo.toy_models import gpt_neox_config, pythia_config, random_model  # noqa: E402
from quanta_db.results.heads.token_metrics import head_token_metrics  # noqa: E402
from quanta_db.runtime.lens_reference import hooked_transformer  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def reference(hooked, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    _, cache = hooked.run_with_cache(ids)
    n_layers, n_heads = hooked.cfg.n_layers, hooked.cfg.n_heads
    targets = ids[:, 1:]
    w_u = hooked.W_U[:, targets]
    stack = cache.stack_head_results(layer=-1, apply_ln=True)[:, :, :-1]
    dla = torch.einsum("cbtd,dbt->btc", stack, w_u).reshape(*targets.shape, n_layers, n_heads)
    causal = torch.ones(targets.shape[1], targets.shape[1], dtype=torch.bool, device=ids.device).tril()
    copies = (ids[:, None, :-1] == targets[:, :, None]) & causal
    scale = cache["ln_final.hook_scale"][:, :-1, 0]
    mover_attn, mover_dla = [], []
    for layer in range(n_layers):
        moved = cache["pattern", layer][:, :, :-1, :-1] * copies[:, None]
        mover_attn.append(moved.sum(-1).transpose(1, 2))
        writes = torch.einsum("bshe,hed->bhsd", cache["v", layer][:, :-1], hooked.W_O[layer])
        writes = writes - writes.mean(-1, keepdim=True)
        moved_writes = torch.einsum("bhqs,bhsd->bhqd", moved, writes) / scale[:, None, :, None]
        mover_dla.append(torch.einsum("bhqd,dbq->bqh", moved_writes, w_u))
    return {"dla": dla, "mover_attn": torch.stack(mover_attn, 2), "mover_dla": torch.stack(mover_dla, 2)}


def timed(fn, device, repeats: int):
    fn()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    _sync(device)
    return (time.perf_counter() - start) / repeats, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shapes", default="tiny")
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    for shape in args.shapes.split(","):
        config = (gpt_neox_config(1024, 128, 4, 4, n_ctx=args.seq_len) if shape == "tiny"
                  else pythia_config(shape, n_ctx=max(2048, args.seq_len)))
        model = random_model(config).to(device).eval()
        hooked = hooked_transformer(model.cpu(), processed=True).to(device)
        model.to(device)
        ids = torch.from_numpy(np.random.default_rng(0).integers(0, config.vocab_size, (args.batch, args.seq_len)))
        ids = ids.to(device)
        ours_s, ours = timed(lambda: head_token_metrics(model, ids), device, args.repeats)
        ref_s, theirs = timed(lambda: reference(hooked, ids), device, args.repeats)
        tokens = args.batch * (args.seq_len - 1)
        print(json.dumps({
            "benchmark": "head_token_metrics", "device": torch.cuda.get_device_name(device) if device.type == "cuda"
            else "cpu", "shape": shape, "tokens": tokens, "ours_tokens_per_s": round(tokens / ours_s),
            "reference_tokens_per_s": round(tokens / ref_s), "ratio": round(ref_s / ours_s, 2),
            "max_abs_diff": {k: float((ours[k] - theirs[k]).abs().max()) for k in ours},
        }))


if __name__ == "__main__":
    main()
