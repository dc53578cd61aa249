"""Benchmark: SAE feature statistics, tokens/s, against the straightforward way, in one run.

Ours: batches of token windows run through the model to the SAE's hook, encode/decode on the
device, and quanta-db's streaming :class:`FeatureStatistics` (counts, sums, max, top-k
examples, band samples, metric sums) — nothing of size tokens × features leaves the device.
Straightforward: the same forward and encode/decode, then every feature activation copied to
host memory and the statistics computed with numpy at the end (top-k by argpartition).

    python bench/sae.py                                   # CPU, small shape
    python bench/sae.py --device cuda --shape pythia-70m --d-sae 32768 --layer 3 \
        --n-tokens 2000000 --reference-tokens 16384 --dtype bfloat16 --density 0.16,0.005 [--profile]

The SAE is a sae-lens-style standard SAE (ReLU(W_enc (x − b_dec) + b_enc), W_dec f + b_dec)
with random weights, written in torch so the benchmark needs no SAE download; prints one JSON
line per density.
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
from quanta_db.results.sae.job import token_budget  # noqa: E402
from quanta_db.results.sae.stats import FeatureStatistics  # noqa: E402
from quanta_db.runtime.hooks import activations_until  # noqa: E402


class StandardSAE(torch.nn.Module):
    """Random standard SAE whose features fire on a fraction ``density`` of the tokens of inputs
    with norm ``input_norm``: pre-activations ≈ N(0, 1) − Φ⁻¹(1 − density)."""

    def __init__(self, d_in: int, d_sae: int, seed: int = 0, input_norm: float = 1.0, density: float = 0.16):
        from scipy.stats import norm

        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W_enc = torch.nn.Parameter(torch.randn(d_in, d_sae, generator=g) / input_norm)
        self.W_dec = torch.nn.Parameter(torch.randn(d_sae, d_in, generator=g) / d_sae**0.5)
        self.b_enc = torch.nn.Parameter(torch.full((d_sae,), -float(norm.ppf(1 - density))))
        self.b_dec = torch.nn.Parameter(torch.zeros(d_in))

    def encode(self, x):
        return torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def decode(self, f):
        return f @ self.W_dec + self.b_dec


@torch.no_grad()
def hook_norm(model, hook: str, config, device) -> float:
    """Mean norm of the hook's activations on random tokens (to calibrate a random SAE)."""
    ids = torch.randint(0, config.vocab_size, (4, 64), generator=torch.Generator().manual_seed(0)).to(device)
    return float(activations_until(model, ids, [hook])[hook].float().norm(dim=-1).mean())


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def ours(model, sae, hook, windows, batch, device, top_k) -> tuple[float, float, float]:
    """(seconds, measured L0, seconds of the final summaries alone)."""
    stats = FeatureStatistics(sae.W_enc.shape[1], device, top_k=top_k)
    _sync(device)
    start = time.perf_counter()
    for i in range(0, len(windows), batch):
        ids = windows[i:i + batch].to(device, non_blocking=True)
        x = activations_until(model, ids, [hook])[hook].flatten(0, 1)
        feats = sae.encode(x)
        stats.add(x, feats, sae.decode(feats), torch.arange(i * ids.shape[1], (i + len(ids)) * ids.shape[1]))
    _sync(device)
    batches_done = time.perf_counter()
    metrics = stats.metric_sums().metrics()
    stats.feature_columns(), stats.top_examples(), stats.band_example_arrays()
    _sync(device)
    end = time.perf_counter()
    return end - start, metrics["l0"], end - batches_done


@torch.no_grad()
def straightforward(model, sae, hook, windows, batch, device, top_k) -> float:
    _sync(device)
    start = time.perf_counter()
    feats_host, xs, x_hats = [], [], []
    for i in range(0, len(windows), batch):
        ids = windows[i:i + batch].to(device)
        x = activations_until(model, ids, [hook])[hook].flatten(0, 1)
        feats = sae.encode(x)
        feats_host.append(feats.float().cpu().numpy())
        xs.append(x.float().cpu().numpy())
        x_hats.append(sae.decode(feats).float().cpu().numpy())
    f = np.concatenate(feats_host)
    x, x_hat = np.concatenate(xs), np.concatenate(x_hats)
    active = f != 0
    n_active, total, top = active.sum(0), f.sum(0, dtype=np.float64), f.max(0)
    order = np.argpartition(-f, min(top_k, len(f) - 1), axis=0)[:top_k]
    _ = (n_active, total, top, order, ((x - x_hat) ** 2).sum(1).mean(), active.sum(1).mean())
    return time.perf_counter() - start


@torch.no_grad()
def profile(model, sae, hook, windows, batch, device, top_k) -> dict[str, float]:
    """Milliseconds per batch of each stage (synchronised around each, so slower than ``ours``);
    ``add`` includes the five statistics stages, the rest of it is listing the active entries."""
    stats = FeatureStatistics(sae.W_enc.shape[1], device, top_k=top_k)
    seconds: dict[str, float] = {}

    def timed(name, fn, *args):
        _sync(device)
        start = time.perf_counter()
        out = fn(*args)
        _sync(device)
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
        return out

    for name in ("_count", "_count_histogram", "_keep_top", "_keep_sample", "_add_metrics"):
        setattr(stats, name, lambda *args, _m=getattr(stats, name), _n=name.strip("_"): timed(_n, _m, *args))
    batches = range(0, len(windows), batch)
    for i in batches:
        ids = windows[i:i + batch].to(device)
        x = timed("forward", lambda: activations_until(model, ids, [hook])[hook].flatten(0, 1))
        feats = timed("encode", sae.encode, x)
        x_hat = timed("decode", sae.decode, feats)
        timed("add", stats.add, x, feats, x_hat, torch.arange(i * ids.shape[1], (i + len(ids)) * ids.shape[1]))
    return {name: round(total / len(batches) * 1000, 2) for name, total in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", default="tiny", help="tiny (d=128, 4 layers) or a Pythia shape")
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--layer", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=0,
                        help="Windows per batch (default: the token budget `ingest sae` picks on this device).")
    parser.add_argument("--density", default="0.16",
                        help="Fraction(s) of tokens each random feature fires on, comma-separated, one JSON line "
                             "each (0.16: L0 ≈ 0.16 d_sae; a trained 32k SAE has L0 of tens to a few hundred, "
                             "i.e. 0.002–0.01).")
    parser.add_argument("--n-tokens", type=int, default=65536)
    parser.add_argument("--reference-tokens", type=int, default=32768)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                        help="Model and SAE weights (statistics accumulate in float32/float64 either way).")
    parser.add_argument("--profile", action="store_true", help="Also time each stage per batch (one more pass).")
    args = parser.parse_args()
    device = torch.device(args.device)
    config = gpt_neox_config(1024, 128, 4, 4, n_ctx=args.seq_len) if args.shape == "tiny" else pythia_config(args.shape)
    dtype = getattr(torch, args.dtype)
    model = random_model(config).to(device, dtype).eval()
    hook = f"blocks.{args.layer}.hook_resid_post"
    if not args.batch:
        args.batch = max(1, token_budget("auto", device, args.d_sae, config.hidden_size, args.seq_len) // args.seq_len)
    rng = np.random.default_rng(0)
    windows = torch.from_numpy(rng.integers(0, config.vocab_size, size=(args.n_tokens // args.seq_len, args.seq_len)))
    n_ref = args.reference_tokens // args.seq_len
    input_norm = hook_norm(model, hook, config, device)
    for density in [float(d) for d in args.density.split(",")]:
        sae = StandardSAE(config.hidden_size, args.d_sae, input_norm=input_norm, density=density).to(device, dtype)
        ours(model, sae, hook, windows[: args.batch], args.batch, device, args.top_k)  # warm-up
        ours_s, l0, summaries_s = ours(model, sae, hook, windows, args.batch, device, args.top_k)
        ref_s = straightforward(model, sae, hook, windows[:n_ref], args.batch, device, args.top_k)
        ours_tps = windows.numel() / ours_s
        ref_tps = n_ref * args.seq_len / ref_s
        stages = {"profile_ms_per_batch": profile(model, sae, hook, windows, args.batch, device, args.top_k)} \
            if args.profile else {}
        print(json.dumps({
            "benchmark": "sae_statistics", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "shape": args.shape, "dtype": args.dtype, "d_sae": args.d_sae, "density": density, "l0": round(l0, 1),
            "hook": hook, "top_k": args.top_k, "batch_tokens": args.batch * args.seq_len, "tokens": windows.numel(),
            "ours_tokens_per_s": round(ours_tps), "summaries_s": round(summaries_s, 3), "reference_tokens": n_ref * args.seq_len,
            "reference_tokens_per_s": round(ref_tps), "ratio": round(ours_tps / ref_tps, 2), **stages,
        }), flush=True)

if __name__ == "__main__":
    main()
