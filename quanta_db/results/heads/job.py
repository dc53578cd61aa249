"""``ingest heads``: per-token head metrics over a corpus and per-head scores of one checkpoint."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from quanta_db.job import Ingest, JobResult, committed, staged
from quanta_db.params import ParameterError, job_function
from quanta_db.results.corpus.read import corpus_row, load_corpus_tokens
from quanta_db.results.heads.head_scores import ov_scores, pattern_scores, repeated_tokens
from quanta_db.results.heads.params import HeadParams
from quanta_db.results.heads.token_metrics import head_token_metrics
from quanta_db.results.losses.models import resolve_model, stage_model_rows
from quanta_db.runtime import models as model_sources
from quanta_db.runtime.batching import pad_batch, plan_batches, run_batches
from quanta_db.runtime.device import parse_batch_size, resolve_device, token_budget
from quanta_db.scaleout.plan import record_shard, shard_of, shard_plan

CPU_TOKEN_BUDGET = 2048
METRICS = ("dla", "mover_attn", "mover_dla")


def _ingest_heads(store, params: HeadParams) -> JobResult:
    """Per-token DLA / mover scores of every head on ``corpus`` and per-head pattern and OV scores.

    Split into shards (``shard``), each takes the documents with doc_id % n == i; shard 0 also
    computes the per-head scores and replaces what an earlier run of the checkpoint stored (the
    split's runs commit together, shard 0 first)."""
    corpus, max_docs, induction_length, induction_seqs, seed = (params.corpus, params.max_docs,
                                                                params.induction_length, params.induction_seqs,
                                                                params.seed)
    device, batch_size, progress = params.device, params.batch_size, params.progress
    shard = shard_of(params)
    first = shard is None or shard[0] == 0
    torch_device = resolve_device(device)
    corpus_info = corpus_row(store, corpus)
    model_name, checkpoint, known = resolve_model(store, params.model, params.step, corpus_info)
    model_name = params.name or model_name
    lm = model_sources.load_model(checkpoint, torch.float32, torch_device)
    vocab_range = params.vocab_range or (0, lm.config.vocab_size)
    if not 0 <= vocab_range[0] < vocab_range[1] <= lm.config.vocab_size:
        raise ParameterError("vocab_range", f"must lie within [0, {lm.config.vocab_size})")
    identity = params.identity(model=model_name, step=checkpoint.step, vocab_range=list(vocab_range),
                               **({"shard": list(shard)} if shard else {}))
    job = Ingest(store, "heads", identity, params.force)
    what = f"heads of {model_name} step {checkpoint.step} on {corpus!r}" + (f", shard {shard[0]}/{shard[1]}"
                                                                            if shard else "")
    if job.previous:
        return job.skipped(f"{what}: already ingested")
    store.see(job.seen, "corpora", is_input=True, corpus=corpus)
    doc_ids, sequences = load_corpus_tokens(store, corpus)
    doc_ids, sequences = doc_ids[:max_docs], sequences[:max_docs]
    if shard:
        keep = np.flatnonzero(doc_ids % shard[1] == shard[0])
        doc_ids, sequences = doc_ids[keep], [sequences[i] for i in keep]
    token_table = _token_metrics(lm, doc_ids, sequences, batch_size, torch_device, progress)
    scores = _head_scores(lm, induction_seqs, induction_length, vocab_range, getattr(lm.config, "bos_token_id", None),
                          seed) if first else None
    with job.begin(device=str(torch_device)) as run:
        if not known:
            stage_model_rows(run, model_name, checkpoint, lm, corpus_info)
        if first:
            run.replace("head_token_metrics", model=model_name, step=checkpoint.step, corpus=corpus)
            run.replace("head_scores", model=model_name, step=checkpoint.step)
        n = token_table.num_rows
        keys = {"model": pa.repeat(model_name, n), "step": pa.repeat(checkpoint.step, n), "corpus": pa.repeat(corpus, n)}
        run.write("head_token_metrics", pa.table({**keys, **{c: token_table[c] for c in token_table.column_names}}))
        if first:
            run.write("head_scores", _scores_table(scores, model_name, checkpoint.step))
        n_heads = lm.config.num_hidden_layers * lm.config.num_attention_heads
        message = f"{what}: {n // max(1, n_heads):,} tokens x {n_heads} heads"
        if scores is not None:
            best = np.unravel_index(np.argmax(scores["induction"]), scores["induction"].shape)
            message += f"; strongest induction head L{best[0]}H{best[1]} ({scores['induction'][best]:.2f})"
        if params.stage_only:
            plan = heads_plan(params, shard[1])
            run.keep_for_split(plan.split, shard)
            record_shard(store, plan, shard[0], [run.run_id], params, "heads")
            return staged(run, n, (plan.split, shard), message)
        written = run.commit()
    return committed(run, written, message)


def heads_plan(params: HeadParams, shards: int):
    """The split of this job into ``shards`` (``--plan``): document parts, shard 0 with the head scores."""
    labels = [f"documents {i}/{shards}" + (" and the per-head scores" if i == 0 else "") for i in range(shards)]
    return shard_plan("heads", params, labels, shards)


ingest_heads = job_function(HeadParams, _ingest_heads)


def _token_metrics(lm, doc_ids, sequences, batch_size, device, progress) -> pa.Table:
    n_ctx = lm.config.max_position_embeddings
    sequences = [s[:n_ctx] for s in sequences]
    lengths = np.array([len(s) for s in sequences])
    keep = np.flatnonzero(lengths > 1)
    n_layers, n_heads = lm.config.num_hidden_layers, lm.config.num_attention_heads
    # attention patterns of one layer ([B, H, T, T] floats, a few copies) dominate the memory
    budget = token_budget(parse_batch_size(batch_size), device, n_ctx, 64 * n_heads * n_ctx, gpu_fraction=0.3,
                          cpu_tokens=CPU_TOKEN_BUDGET)
    columns: dict[str, list] = {k: [] for k in ("doc_id", "pos", "layer", "head", *METRICS)}
    with tqdm(total=int(lengths[keep].sum()), unit="tok", unit_scale=True, disable=not progress, desc="heads") as bar:
        def one_batch(batch):
            chosen = [keep[i] for i in batch]
            ids = pad_batch([sequences[i] for i in chosen])
            metrics = head_token_metrics(lm, ids)
            for row, index in enumerate(chosen):
                n = lengths[index] - 1  # predictable tokens: pos 1..len-1, predicted at 0..len-2
                grid = np.stack(np.meshgrid(np.arange(1, n + 1), np.arange(n_layers), np.arange(n_heads),
                                            indexing="ij"), -1).reshape(-1, 3)
                columns["doc_id"].append(np.full(len(grid), doc_ids[index], dtype=np.int64))
                columns["pos"].append(grid[:, 0].astype(np.int32))
                columns["layer"].append(grid[:, 1].astype(np.int16))
                columns["head"].append(grid[:, 2].astype(np.int16))
                for name in METRICS:
                    columns[name].append(metrics[name][row, :n].reshape(-1).cpu().numpy().astype(np.float32))
            return int(lengths[chosen].sum())

        for _, n in run_batches(plan_batches(lengths[keep], budget, min_length=2), one_batch):
            bar.update(n)
    return pa.table({k: np.concatenate(v) if v else np.empty(0) for k, v in columns.items()})


def _head_scores(lm, n_seqs, length, vocab_range, bos, seed) -> dict[str, np.ndarray]:
    ids = repeated_tokens(n_seqs, length, vocab_range, bos, seed)
    return {**pattern_scores(lm, ids, length), **ov_scores(lm)}


def _scores_table(scores: dict[str, np.ndarray], model: str, step: int) -> pa.Table:
    n_layers, n_heads = scores["induction"].shape
    layer, head = np.meshgrid(np.arange(n_layers), np.arange(n_heads), indexing="ij")
    return pa.table({"model": pa.repeat(model, layer.size), "step": pa.repeat(step, layer.size),
                     "layer": layer.ravel().astype(np.int16), "head": head.ravel().astype(np.int16),
                     **{k: v.ravel().astype(np.float64) for k, v in scores.items()}})
