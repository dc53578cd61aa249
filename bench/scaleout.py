"""Benchmark: a losses split over N shards on a local Ray cluster against one process, in one run.

    python bench/scaleout.py                               # CPU: 2 shards, pythia-70m shape
    python bench/scaleout.py --device cuda --shards 8      # one shard per GPU on an 8-GPU host

Measured, on the same store and random-weight model:
- ``one_process_s``: ``ingest losses`` unsplit (model load, scoring, commit);
- ``serial_split_s``: the same job as N Ray shards run one at a time (each shard holding every CPU and
  GPU), then ``commit --split``, on workers that have started (a first split warmed them);
  ``overhead_per_shard_s`` = (serial_split_s − one_process_s − (N − 1) × load_s) / N, what a shard
  costs beyond its share of the work and loading its own model (target < 2 s);
- ``worker_start_s``: what the first split on a fresh cluster costs more (Ray starting a worker,
  which imports torch and transformers once);
- ``parallel_split_s`` with all shards at once on warm workers (one GPU each on a k-GPU host; on CPU,
  the cores shared out), and ``speedup`` = one_process_s / parallel_split_s (target ≥ 0.9 k on k GPUs);
- ``split_machinery_per_shard_s``: the same overhead with the shards run in this process, one
  after the other (staging, records and the split's commit, without Ray's worker start and imports);
- ``equal``: the split's stored rows equal the unsplit run's — keys exactly, losses within 1e-5 nats
  (a shard batches its own documents: other batch shapes may round the last float32 bit otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.losses import build_corpus  # noqa: E402
from quanta_db.demo import toy_corpus as toy  # noqa: E402
from quanta_db.demo.toy_models import pythia_config, random_model  # noqa: E402
from quanta_db.results.losses.job import ingest_losses, loss_plan  # noqa: E402
from quanta_db.results.losses.params import LossParams  # noqa: E402
from quanta_db.runtime import models as model_sources  # noqa: E402
from quanta_db.store.store import Store  # noqa: E402


def _ray_split(store, params, shards: int, cpus_per_shard: float, gpus_per_shard: float) -> float:
    """Seconds of a split of ``params`` on the running Ray cluster, its commit included."""
    from quanta_db.scaleout import ray_executor

    start = time.perf_counter()
    ray_executor.run_split(store, "quanta_db.results.losses.job:ingest_losses", "losses", params,
                           loss_plan(params, shards), gpus_per_shard=gpus_per_shard, progress=False,
                           cpus_per_shard=cpus_per_shard)
    return time.perf_counter() - start


def _import_the_job() -> float:
    import time as clock

    import quanta_db.results.losses.job  # noqa: F401

    clock.sleep(0.5)  # held a while, so that every slot gets a worker of its own
    return 0.0


def _warm_workers(ray, slots: int) -> None:
    """Start a worker on every CPU slot and import the job there, as the first split did on one."""
    task = ray.remote(_import_the_job).options(num_cpus=1)
    ray.get([task.remote() for _ in range(slots)])


def _in_process_split(store, params, shards: int) -> float:
    """The same split with every shard in this process, one after the other, then its commit: what
    the split itself costs a shard, without Ray's worker start and imports."""
    import dataclasses

    start = time.perf_counter()
    for index in range(shards):
        ingest_losses(store, dataclasses.replace(params, shard=(index, shards), stage_only=True))
    store.commit_split(loss_plan(params, shards).split)
    return time.perf_counter() - start


def _losses(store, model: str):
    return store.query_df("SELECT doc_id, pos, loss_nats FROM token_losses WHERE model = ? ORDER BY doc_id, pos",
                          [model])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="pythia-70m")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shards", type=int, help="Shards [default: one per GPU, or 2 on CPU].")
    parser.add_argument("--n-docs", type=int, default=64)
    parser.add_argument("--doc-len", type=int, default=256)
    args = parser.parse_args()
    gpus = torch.cuda.device_count() if args.device.startswith("cuda") else 0
    args.shards = args.shards or max(gpus, 2)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        tokenizer_dir = toy.train_tokenizer([r["text"] for r in toy.stdlib_documents(20)], tmp / "tok", 512)
        config = pythia_config(args.shape)
        random_model(config).save_pretrained(tmp / "model")
        store = Store.init(tmp / "store")
        build_corpus(store, tokenizer_dir, args.n_docs, args.doc_len, config.vocab_size)
        common = {"source": str(tmp / "model"), "corpus": "bench", "tokenizer": str(tokenizer_dir),
                  "device": "auto" if gpus else "cpu", "progress": False}
        start = time.perf_counter()
        model_sources.load_model(model_sources.resolve_checkpoints(str(tmp / "model"), None, ())[0],
                                 torch.float32, torch.device("cuda" if gpus else "cpu"))
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        ingest_losses(store, LossParams(name="one", **common))
        one_s = time.perf_counter() - start
        import ray

        cpus = os.cpu_count() or 1
        ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        try:
            # a shard holding every CPU and every GPU runs alone: the shards one after the other
            cold_s = _ray_split(store, LossParams(name="cold", **common), args.shards, cpus, gpus)
            serial_s = _ray_split(store, LossParams(name="serial", **common), args.shards, cpus, gpus)
            _warm_workers(ray, cpus)  # Ray starts other workers for tasks of another size
            parallel_s = _ray_split(store, LossParams(name="parallel", **common), args.shards,
                                    max(1, cpus // args.shards), 1 if gpus else 0)
        finally:
            ray.shutdown()
        in_process_s = _in_process_split(store, LossParams(name="in-process", **common), args.shards)
        one = _losses(store, "one")
        others = [_losses(store, name) for name in ("cold", "serial", "parallel", "in-process")]
        equal = all(o[["doc_id", "pos"]].equals(one[["doc_id", "pos"]]) for o in others)
        max_diff = max(float((o.loss_nats - one.loss_nats).abs().max()) for o in others)
        equal = equal and max_diff <= 1e-5
        n_tokens = len(one)
    overhead = (serial_s - one_s - (args.shards - 1) * load_s) / args.shards
    machinery = (in_process_s - one_s - (args.shards - 1) * load_s) / args.shards
    result = {"benchmark": "scaleout", "shape": args.shape, "device": args.device, "gpus": gpus,
              "shards": args.shards, "tokens": n_tokens, "load_s": round(load_s, 2), "one_process_s": round(one_s, 2),
              "serial_split_s": round(serial_s, 2), "overhead_per_shard_s": round(overhead, 2),
              "in_process_split_s": round(in_process_s, 2), "cold_serial_split_s": round(cold_s, 2),
              "worker_start_s": round(cold_s - serial_s, 2), "split_machinery_per_shard_s": round(machinery, 2),
              "max_loss_diff_nats": max_diff,
              "parallel_split_s": round(parallel_s, 2), "speedup": round(one_s / parallel_s, 2),
              "ratio_parallel_vs_one": round(one_s / parallel_s, 2), "equal": equal}
    print(f"{args.shards} shards ({gpus} GPUs): one process {one_s:.1f} s, serial split {serial_s:.1f} s "
          f"(overhead {overhead:.2f} s a shard beyond a {load_s:.1f} s model load), parallel split {parallel_s:.1f} s "
          f"(speedup {one_s / parallel_s:.2f}x); without Ray, {machinery:.2f} s a shard; keys equal and losses within "
          f"{max_diff:.1e} nats: {equal}")
    print(json.dumps(result), flush=True)
    if not equal:
        sys.exit("the split's losses differ from the unsplit run's")


if __name__ == "__main__":
    main()
