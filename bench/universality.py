"""Benchmark: the feature-universality pipeline against the reference notebooks' way, in one run.

Ours (quanta_db.results.universality): both models and SAEs over the same token batches, Pearson
correlation from streamed sums (one GEMM per batch on the device, nothing on the host), top
partners by topk, exact one-to-one matching (scipy linear_sum_assignment), then SVCCA and RSA of
the matched decoder rows with permutation nulls batched on the device (shuffled pairing).

Reference (the seed notebooks' way): every feature activation of both SAEs collected in host
memory, columns normalised on the host, the correlation computed on the device 100 B columns at
a time; the permutation null as a Python loop of the numpy metric, one draw at a time. It runs
on ``--reference-tokens`` tokens and ``--reference-permutations`` draws and is projected
linearly to the full sizes ("projected" in the output).

    python bench/universality.py                       # CPU, small shape
    python bench/universality.py --device cuda --shape-a pythia-70m --shape-b pythia-160m \
        --layer-a 3 --layer-b 6 --d-sae 32768 --n-tokens 100000 --permutations 1000

The SAEs are random standard SAEs (bench/sae.py); the models have random weights (speed does
not depend on the weight values). Prints one JSON line.
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

from bench.sae import StandardSAE, hook_norm  # noqa: E402
from quanta_db.demo.toy_models import gpt_neox_config, pythia_config, random_model  # noqa: E402
from quanta_db.results.universality import metrics, nulls  # noqa: E402
from quanta_db.results.universality.pairing import CrossCorrelation, match, top_partners  # noqa: E402
from quanta_db.runtime.hooks import activations_until  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _config(shape: str, tiny_width: int, seq_len: int):
    return gpt_neox_config(1024, tiny_width, 4, 4, n_ctx=seq_len) if shape == "tiny" else pythia_config(shape)


def _features(sides, ids):
    return [sae.encode(activations_until(model, ids, [hook])[hook].flatten(0, 1)) for model, sae, hook in sides]


class Timer:
    def __init__(self, device):
        self.device, self.seconds = device, {}

    def __call__(self, name, fn):
        _sync(self.device)
        start = time.perf_counter()
        out = fn()
        _sync(self.device)
        self.seconds[name] = time.perf_counter() - start
        # each stage as it ends, so a run cut off by a time limit still says where the time went
        print(f"stage {name}: {self.seconds[name]:.2f} s", file=sys.stderr, flush=True)
        return out


@torch.no_grad()
def ours_correlation(sides, windows, batch, device) -> torch.Tensor:
    accumulator = CrossCorrelation(sides[0][1].W_enc.shape[1], sides[1][1].W_enc.shape[1], device)
    for i in range(0, len(windows), batch):
        accumulator.add(*_features(sides, windows[i:i + batch].to(device)))
    corr = accumulator.correlation_tensor()
    top_partners(corr, 5)
    return corr


@torch.no_grad()
def reference_correlation(sides, windows, batch, device) -> None:
    host = [[], []]
    for i in range(0, len(windows), batch):
        for store, feats in zip(host, _features(sides, windows[i:i + batch].to(device))):
            store.append(feats.float().cpu().numpy())
    a, b = (np.concatenate(h) for h in host)
    a, b = ((m - m.mean(0)) / (m.std(0) + 1e-8) for m in (a, b))  # normalised on the host
    a, b = torch.from_numpy(a).to(device), torch.from_numpy(b).to(device)
    for start in range(0, b.shape[1], 100):
        (a.T @ b[:, start:start + 100] / a.shape[0]).max(dim=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape-a", default="tiny")
    parser.add_argument("--shape-b", default="tiny")
    parser.add_argument("--layer-a", type=int, default=1)
    parser.add_argument("--layer-b", type=int, default=2)
    parser.add_argument("--d-sae", type=int, default=2048)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32, help="Windows per batch.")
    parser.add_argument("--n-tokens", type=int, default=32768)
    parser.add_argument("--reference-tokens", type=int, default=8192)
    parser.add_argument("--permutations", type=int, default=1000)
    parser.add_argument("--reference-permutations", type=int, default=10)
    parser.add_argument("--metric-pairs", type=int, default=512,
                        help="Matched pairs the metrics compare: the highest-correlation ones (a paper's filtered set).")
    args = parser.parse_args()
    device = torch.device(args.device)
    widths = {"a": 128, "b": 192}
    sides = []
    for name, shape, layer in (("a", args.shape_a, args.layer_a), ("b", args.shape_b, args.layer_b)):
        config = _config(shape, widths[name], args.seq_len)
        model = random_model(config, seed=len(sides)).to(device)
        hook = f"blocks.{layer}.hook_resid_post"
        norm = hook_norm(model, hook, config, device)
        sides.append((model, StandardSAE(config.hidden_size, args.d_sae, len(sides), norm).to(device), hook))
    vocab = min(side[0].config.vocab_size for side in sides)
    rng = np.random.default_rng(0)
    windows = torch.from_numpy(rng.integers(0, vocab, size=(args.n_tokens // args.seq_len, args.seq_len)))
    n_ref = max(1, args.reference_tokens // args.seq_len)
    ours_correlation(sides, windows[:args.batch], args.batch, device)  # warm-up
    time_it = Timer(device)
    corr = time_it("correlation", lambda: ours_correlation(sides, windows, args.batch, device))
    time_it("reference_correlation", lambda: reference_correlation(sides, windows[:n_ref], args.batch, device))
    pairs = time_it("one_to_one", lambda: match(corr.cpu().numpy(), "one-to-one"))
    best = sorted(pairs, key=lambda p: -p[2])[:args.metric_pairs]
    x = sides[0][1].W_dec.detach().double().cpu().numpy()[[p[0] for p in best]]
    y = sides[1][1].W_dec.detach().double().cpu().numpy()[[p[1] for p in best]]
    for name in ("svcca", "rsa"):
        time_it(name, lambda: nulls.null_distribution(name, x, y, args.permutations, 0, "shuffled_pairing",
                                                      device=device))
        time_it(f"reference_{name}", lambda: metrics._null_loop(metrics.METRICS[name], x, y,
                                                                 args.reference_permutations, 0, "shuffled_pairing",
                                                                 None, None))
    s = time_it.seconds
    tokens = windows.numel()
    projected = {"correlation": s["reference_correlation"] * tokens / (n_ref * args.seq_len)}
    for name in ("svcca", "rsa"):
        projected[name] = s[f"reference_{name}"] * args.permutations / args.reference_permutations
    pipeline = s["correlation"] + s["one_to_one"] + s["svcca"] + s["rsa"]
    print(json.dumps({
        "benchmark": "universality", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "shapes": [args.shape_a, args.shape_b], "hooks": [side[2] for side in sides], "d_sae": args.d_sae,
        "tokens": tokens, "permutations": args.permutations, "metric_pairs": len(best),
        "correlation_s": round(s["correlation"], 2), "one_to_one_s": round(s["one_to_one"], 2),
        "svcca_null_s": round(s["svcca"], 2), "rsa_null_s": round(s["rsa"], 2), "pipeline_s": round(pipeline, 2),
        "reference_correlation_s_projected": round(projected["correlation"], 2),
        "reference_svcca_null_s_projected": round(projected["svcca"], 2),
        "reference_rsa_null_s_projected": round(projected["rsa"], 2),
        "ratio_correlation": round(projected["correlation"] / s["correlation"], 2),
        "ratio_svcca_null": round(projected["svcca"] / s["svcca"], 2),
        "ratio_rsa_null": round(projected["rsa"] / s["rsa"], 2),
    }))


if __name__ == "__main__":
    main()
