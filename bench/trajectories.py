"""Benchmark: loss-trajectory fits — build + PCA + hybrid — against the reference way, in one run.

Synthetic losses with a low-rank structure (a few smooth "developmental" directions over the
checkpoints, each loading on a sparse set of tokens, plus noise) are written as one Parquet
file per (model, step), as ``token_losses`` partitions are.

Ours: the matrix filled partition by partition (``matrix.fill_row``), PCA by the Gram
eigendecomposition and the hybrid (PCA, then sparse PCA of the residual by the device solver)
from ``quanta_db.results.trajectories.fit``, at the full shape.
Reference (the anchor code's way): a pandas pivot of the concatenated long table, sklearn
``PCA`` and ``SparsePCA`` — on the first ``--reference-tokens`` token columns (sklearn cannot
do the full shape in reasonable time), projected linearly in columns ("projected").

    python bench/trajectories.py                  # CPU, small shape
    python bench/trajectories.py --device cuda --models 8 --checkpoints 154 --tokens 262144 \
        --reference-tokens 4096

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quanta_db.results.trajectories.fit import hybrid, pca  # noqa: E402
from quanta_db.results.trajectories.matrix import fill_row, token_keys  # noqa: E402


def synthetic_losses(n_models: int, n_checkpoints: int, n_tokens: int, seed: int = 0) -> np.ndarray:
    """[n_models * n_checkpoints, n_tokens] float32 losses: base + 4 sparse developmental directions + noise."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n_checkpoints)
    profiles = np.stack([np.exp(-5 * t), np.sin(np.pi * t), t**2, np.exp(-((t - 0.4) / 0.1) ** 2)])
    loadings = rng.normal(size=(4, n_tokens)) * (rng.random((4, n_tokens)) < 0.05)
    rows = []
    for m in range(n_models):
        scale = 1 + 0.3 * m
        rows.append(3 + scale * (profiles.T @ loadings) + 0.1 * rng.normal(size=(n_checkpoints, n_tokens)))
    return np.concatenate(rows).astype(np.float32)


def write_partitions(losses: np.ndarray, folder: Path, doc_len: int = 512) -> list[Path]:
    tokens = np.arange(losses.shape[1])
    doc_id, pos = tokens // doc_len, tokens % doc_len + 1
    paths = []
    for i, row in enumerate(losses):
        path = folder / f"row{i:05d}.parquet"
        pq.write_table(pa.table({"doc_id": doc_id.astype(np.int64), "pos": pos.astype(np.int32), "loss_nats": row}), path)
        paths.append(path)
    return paths


def ours(paths: list[Path], n_tokens: int, device, components: int, sparse: int) -> dict[str, float]:
    seconds = {}
    start = time.perf_counter()
    first = pq.read_table(paths[0])
    columns = np.sort(token_keys(first["doc_id"].to_numpy(), first["pos"].to_numpy()))
    values = np.empty((len(paths), len(columns)), dtype=np.float32)
    for i, path in enumerate(paths):
        fill_row(values[i], columns, pq.read_table(path))
    seconds["build"] = time.perf_counter() - start
    x = torch.as_tensor(values, device=device)
    x = x - x.mean(dim=0, keepdim=True)
    for name, fn in (("pca", lambda: pca(x, components)),
                     ("hybrid", lambda: hybrid(x, components, sparse, alpha=1.0, max_iter=200))):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds[name] = time.perf_counter() - start
    return seconds


def reference(paths: list[Path], n_tokens: int, components: int, sparse: int) -> dict[str, float]:
    import pandas as pd
    from sklearn.decomposition import PCA, SparsePCA

    seconds = {}
    start = time.perf_counter()
    long = pd.concat([pq.read_table(p).to_pandas().head(n_tokens).assign(row=i) for i, p in enumerate(paths)])
    matrix = long.pivot_table(index="row", columns=["doc_id", "pos"], values="loss_nats").to_numpy()
    seconds["build"] = time.perf_counter() - start
    start = time.perf_counter()
    dense = PCA(components, svd_solver="full").fit(matrix)
    seconds["pca"] = time.perf_counter() - start
    start = time.perf_counter()
    residual = matrix - dense.inverse_transform(dense.transform(matrix))
    SparsePCA(sparse, alpha=1.0, max_iter=200, random_state=42).fit(residual)
    seconds["hybrid"] = seconds["pca"] + time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", type=int, default=4)
    parser.add_argument("--checkpoints", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=65536)
    parser.add_argument("--reference-tokens", type=int, default=2048)
    parser.add_argument("--components", type=int, default=2)
    parser.add_argument("--sparse-components", type=int, default=4)
    args = parser.parse_args()
    device = torch.device(args.device)
    losses = synthetic_losses(args.models, args.checkpoints, args.tokens)
    with tempfile.TemporaryDirectory() as folder:
        paths = write_partitions(losses, Path(folder))
        ours_s = ours(paths, args.tokens, device, args.components, args.sparse_components)
        ref_s = reference(paths, args.reference_tokens, args.components, args.sparse_components)
    scale = args.tokens / args.reference_tokens
    projected = {k: v * scale for k, v in ref_s.items()}
    print(json.dumps({
        "benchmark": "trajectories", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "rows": losses.shape[0], "tokens": args.tokens, "matrix_gb": round(losses.nbytes / 2**30, 3),
        "components": args.components, "sparse_components": args.sparse_components,
        **{f"{k}_s": round(v, 2) for k, v in ours_s.items()},
        "reference_tokens": args.reference_tokens,
        **{f"reference_{k}_s": round(v, 2) for k, v in ref_s.items()},
        **{f"reference_{k}_s_projected": round(v, 1) for k, v in projected.items()},
        **{f"ratio_{k}": round(projected[k] / ours_s[k], 1) for k in ours_s},
    }))


if __name__ == "__main__":
    main()
