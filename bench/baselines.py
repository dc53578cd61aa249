"""Benchmark: the PCA fit of ``ingest baselines`` and the statistics of ``ingest geometry``, against
the reference way of doing the same work, in one run.

- PCA. Ours: ``quanta_db.results.baselines.fit.fit_pca`` on the device (float64 Gram of the centred
  activations in row blocks, ``eigh``). Reference: scikit-learn's ``PCA(n_components=K)`` on the
  host, its default solver for the shape. Reported: seconds each, the ratio, the largest
  difference of the components (up to sign) and of the explained variances.
- Geometry. Ours: ``ActivationMoments`` streamed over the activations in batches on the device.
  Reference: the straightforward numpy pass over the whole float64 matrix on the host (mean, std,
  mean square, ``scipy.stats.kurtosis``, max |x|, ``np.cov`` + ``eigvalsh``, mean pair cosine from
  the unit rows). Reported: tokens/s each, the ratio, the largest relative difference.

    python bench/baselines.py                                     # CPU, small shape
    python bench/baselines.py --device cuda --n-tokens 1000000 --d 512 --k 256

Synthetic activations with a decaying spectrum, a mean and two outlier dimensions (speed does not
depend on the values); prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.stats
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quanta_db.results.baselines.fit import fit_pca  # noqa: E402
from quanta_db.results.geometry.moments import ActivationMoments  # noqa: E402


def activations(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.geomspace(3.0, 0.05, d).astype(np.float32)
    x = rng.standard_normal((n, d), dtype=np.float32) * scales
    x[:, :2] += np.float32(20.0)  # outlier dimensions, as residual streams have
    return x + np.float32(0.1)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(function, device: torch.device, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        result = function()
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_pca(x: np.ndarray, k: int, device: torch.device, repeats: int) -> dict:
    from sklearn.decomposition import PCA

    on_device = torch.from_numpy(x).to(device)
    fit_pca(on_device[:1000], min(k, 8))  # warm-up: kernels, cuSOLVER handles
    ours_s, ours = timed(lambda: fit_pca(on_device, k), device, repeats)
    reference_s, reference = timed(lambda: PCA(n_components=k).fit(x), device, 1)
    # scikit-learn computes in the input's float32; the same fit in float64 shows which of the two
    # is the more exact (ours accumulates in float64)
    exact_s, exact = timed(lambda: PCA(n_components=k).fit(x.astype(np.float64)), device, 1)
    return {"benchmark": "baselines", "analysis": "pca_fit", "n_tokens": len(x), "d": x.shape[1], "k": k,
            "device": str(device), "ours_s": round(ours_s, 4), "sklearn_s": round(reference_s, 4),
            "sklearn_float64_s": round(exact_s, 4), "ratio": round(reference_s / ours_s, 2),
            "ratio_float64": round(exact_s / ours_s, 2), "solver": reference._fit_svd_solver,
            **{f"max_{what}_diff{suffix}": value for suffix, fitted in (("", reference), ("_float64", exact))
               for what, value in _differences(ours, fitted).items()}}


def _differences(ours, reference) -> dict:
    signs = np.sign((ours.w_dec * reference.components_).sum(1))
    return {"component": float(np.abs(ours.w_dec * signs[:, None] - reference.components_).max()),
            "explained_variance_rel": float(np.max(np.abs(ours.explained_variance - reference.explained_variance_)
                                                   / reference.explained_variance_))}


def numpy_geometry(x: np.ndarray) -> dict:
    x = x.astype(np.float64)
    mean_square = (x**2).mean(0)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit_sum = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0).sum(0)
    eigenvalues = np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True))[::-1]
    return {"mean": x.mean(0), "std": x.std(0), "mean_square": mean_square, "kurtosis": scipy.stats.kurtosis(x, axis=0),
            "max_abs": np.abs(x).max(0), "spectrum": eigenvalues,
            "mean_pair_cosine": (unit_sum @ unit_sum - (norms > 0).sum()) / (len(x) * (len(x) - 1))}


def bench_geometry(x: np.ndarray, device: torch.device, batch: int, repeats: int) -> dict:
    on_device = torch.from_numpy(x).to(device)

    def ours():
        moments = ActivationMoments(x.shape[1], device)
        for start in range(0, len(x), batch):
            moments.add(on_device[start:start + batch])
        spectrum = moments.spectrum()
        return {**moments.dimensions(), "spectrum": spectrum,
                "mean_pair_cosine": moments.summary(spectrum)["mean_pair_cosine"]}

    ours(), _sync(device)  # warm-up
    ours_s, got = timed(ours, device, repeats)
    reference_s, expected = timed(lambda: numpy_geometry(x), device, 1)
    worst = max(float(np.max(np.abs(np.asarray(got[name]) - expected[name])
                             / np.maximum(np.abs(expected[name]), 1e-12 * np.abs(expected[name]).max())))
                for name in ("mean", "std", "mean_square", "kurtosis", "max_abs", "spectrum"))
    return {"benchmark": "baselines", "analysis": "geometry_statistics", "n_tokens": len(x), "d": x.shape[1],
            "device": str(device), "batch": batch, "ours_tokens_per_s": round(len(x) / ours_s),
            "numpy_tokens_per_s": round(len(x) / reference_s), "ratio": round(reference_s / ours_s, 2),
            "max_rel_diff": worst,
            "pair_cosine_diff": abs(float(got["mean_pair_cosine"]) - float(expected["mean_pair_cosine"]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n-tokens", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--batch", type=int, default=65536, help="Tokens per geometry batch.")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    x = activations(args.n_tokens, args.d)
    print(json.dumps(bench_pca(x, args.k, device, args.repeats)), flush=True)
    print(json.dumps(bench_geometry(x, device, args.batch, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
