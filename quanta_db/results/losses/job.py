"""``ingest losses``: per-token losses of a model at one or more training checkpoints.

Each checkpoint is its own run, committed as soon as it is computed (in a background
thread, while the next checkpoint loads and runs), so a crash or Ctrl-C after k
checkpoints keeps those k and re-running the command skips them.

Split into ``n`` shards, the units are checkpoints × document parts: each checkpoint's
documents are cut into ``d = ceil(n / checkpoints)`` parts (doc_id % d), so that a shard loads as
few checkpoints as it can (loading a large model costs more than scoring a corpus with it).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from quanta_db.errors import InputError
from quanta_db.job import JobResult, committed, staged
from quanta_db.params import job_function
from quanta_db.results.corpus.read import corpus_row, load_corpus_tokens
from quanta_db.results.losses.compute import launch_batch_losses
from quanta_db.results.losses.models import check_corpus_tokenizer, stage_model_rows
from quanta_db.results.losses.params import LossParams
from quanta_db.runtime import models as model_sources
from quanta_db.runtime.batching import plan_batches, run_batches
from quanta_db.runtime.device import parse_batch_size, resolve_device, resolve_dtype, token_budget
from quanta_db.scaleout.plan import record_shard, shard_of, shard_plan
from quanta_db.store.store import Store

log = logging.getLogger(__name__)
CPU_TOKEN_BUDGET = 16384
MAX_GPU_TOKEN_BUDGET = 262144


@dataclass
class LossSpec:
    model: str
    source: str
    corpus: str
    dtype: str
    params: LossParams

    def identity(self, unit: LossUnit) -> dict:
        return self.params.identity(model=self.model, source=self.source, step=unit.checkpoint.step,
                                    revision=unit.checkpoint.revision, shard=list(unit.part) if unit.part else None)


@dataclass(frozen=True)
class LossUnit:
    """One run's work: a checkpoint over the documents of one part (``None``: all documents)."""

    checkpoint: model_sources.Checkpoint
    part: tuple[int, int] | None

    @property
    def label(self) -> str:
        return f"step {self.checkpoint.step}" + (f", documents {self.part[0]}/{self.part[1]}" if self.part else "")


def loss_units(checkpoints: list, shards: int | None) -> list[LossUnit]:
    """Checkpoints × document parts, checkpoint-major (see the module docstring)."""
    parts = max(1, -(-(shards or 1) // len(checkpoints)))
    return [LossUnit(c, (p, parts) if parts > 1 else None) for c in checkpoints for p in range(parts)]


def _ingest_losses(store: Store, params: LossParams) -> list[JobResult]:
    """Compute and commit ``token_losses`` for every checkpoint not yet in the store.

    With ``shard`` (i, n), only shard i's units (:func:`loss_plan`); with ``stage_only``, its runs
    are staged for ``quanta-db commit --split`` instead of committed.

    ``compile_model``: run the transformer through ``torch.compile`` on CUDA (not part of the
    run's identity: the losses agree with the eager ones within the tested tolerances); on CPU
    it is ignored, as compiling costs more there than it saves."""
    corpus, force, progress = params.corpus, params.force, params.progress
    if not progress:
        model_sources.silence_library_progress()
    corpus_info = corpus_row(store, corpus)
    batch_size = parse_batch_size(params.batch_size)
    torch_dtype, torch_device = resolve_dtype(params.dtype), resolve_device(params.device)
    spec, checkpoints, plan = _spec_and_plan(params)
    shard = shard_of(params)
    units = loss_units(checkpoints, plan.shards if shard else None)
    units = [units[i] for i in plan.mine(shard[0])] if shard else units
    check_corpus_tokenizer(params.source, checkpoints[0], params.tokenizer, corpus_info)
    decided = [(u, *_decide(store, spec, u, force)) for u in units]
    results = [JobResult(run_id, 0, skipped=True, message=f"{spec.model} {u.label}: already ingested")
               for u, run_id, _ in decided if run_id]
    todo = [(u, seen) for u, run_id, seen in decided if not run_id]
    split = (plan.split, shard) if params.stage_only else None
    if todo:
        results += _score_units(store, spec, todo, corpus_info, batch_size, torch_dtype, torch_device, split)
    if split:
        record_shard(store, plan, shard[0], [r.run_id for r in results if r.details.get("staged")], params, "losses")
    return results


def loss_plan(params: LossParams, shards: int):
    """The split of this job into ``shards`` (``--plan``): its units and the shard of each."""
    return _spec_and_plan(params, shards)[2]


def _spec_and_plan(params: LossParams, shards: int | None = None):
    source = params.source
    spec = LossSpec(params.name or model_sources.default_model_name(source), str(source), params.corpus,
                    params.dtype, params)
    steps = list(params.steps) if isinstance(params.steps, (tuple, list)) else params.steps
    checkpoints = model_sources.resolve_checkpoints(source, steps, params.revisions)
    shards = shards or (params.shard[1] if params.shard else 1)
    return spec, checkpoints, shard_plan("losses", params, [u.label for u in loss_units(checkpoints, shards)], shards)


def _score_units(store, spec: LossSpec, todo, corpus_info, batch_size, torch_dtype, torch_device, split):
    all_doc_ids, all_sequences = load_corpus_tokens(store, spec.corpus)
    inputs = {u.part: _part(all_doc_ids, all_sequences, u.part) for u, _ in todo}
    if not any(len(sequences) for _, sequences in inputs.values()):
        raise InputError(f"corpus {spec.corpus!r} has no documents" + (" in this shard" if todo[0][0].part else ""))
    total = sum(max(len(s) - 1, 0) for u, _ in todo for s in inputs[u.part][1])
    results, model, loaded = [], None, None
    with ThreadPoolExecutor(max_workers=1) as committer, \
            tqdm(total=total, unit="tok", unit_scale=True, disable=not spec.params.progress, desc=spec.model) as bar:
        pending: Future | None = None
        try:
            for unit, seen in todo:
                checkpoint = unit.checkpoint
                bar.set_description(f"{spec.model} {unit.label}")
                if loaded != checkpoint:
                    model = None  # freed before the next checkpoint loads
                    model, loaded = _load(spec, checkpoint, torch_dtype, torch_device), checkpoint
                doc_ids, sequences = inputs[unit.part]
                check_vocabulary(model, sequences, spec, checkpoint)
                arrays = checkpoint_losses(model, doc_ids, sequences, batch_size, torch_device, bar)
                run = store.begin_run("losses", spec.identity(unit), device=str(torch_device), observation=seen)
                try:
                    _prepare_catalog(run, spec, checkpoint, model, corpus_info, replace=spec.params.force)
                    if pending is not None:  # the previous unit's commit; if refused, so is this run
                        previous, pending = pending, None
                        results.append(previous.result())
                except BaseException:
                    run.abort()
                    raise
                pending = committer.submit(_write_and_commit, run, spec, unit, arrays, split)
        finally:
            if pending is not None:
                results.append(pending.result())
    return results


def _part(doc_ids, sequences, part):
    if part is None:
        return doc_ids, sequences
    keep = np.flatnonzero(doc_ids % part[1] == part[0])
    return doc_ids[keep], [sequences[i] for i in keep]


def _load(spec: LossSpec, checkpoint, torch_dtype, torch_device):
    model = model_sources.load_model(checkpoint, torch_dtype, torch_device)
    if spec.params.compile_model and torch_device.type == "cuda":
        setattr(model, model.base_model_prefix, torch.compile(model.base_model, dynamic=True))
    return model


ingest_losses = job_function(LossParams, _ingest_losses)


def check_vocabulary(model, sequences, spec: LossSpec, checkpoint) -> None:
    """Every token id of the corpus must have a row in the model's embedding matrix."""
    n_embeddings = model.get_input_embeddings().num_embeddings
    top = max((int(s.max()) for s in sequences if len(s)), default=-1)
    if top >= n_embeddings:
        raise InputError(f"model {spec.model!r} step {checkpoint.step} has {n_embeddings} token embeddings but corpus "
                         f"{spec.corpus!r} uses token id {top}; the model and the corpus's tokenizer do not belong "
                         "together")


def _decide(store: Store, spec: LossSpec, unit: LossUnit, force: bool):
    """(run that already covers this unit or None, what the decision saw)."""
    seen = store.observe("losses", spec.identity(unit))
    store.see(seen, "token_losses", shard=unit.part, model=spec.model, step=unit.checkpoint.step, corpus=spec.corpus)
    store.see(seen, "corpora", is_input=True, corpus=spec.corpus)
    return _existing_run(store, spec, unit, force), seen


def _existing_run(store: Store, spec: LossSpec, unit: LossUnit, force: bool) -> str | None:
    """The run that already covers this job (then it is skipped), or None.

    Under ``force`` nothing is skipped: the commit replaces every earlier loss of the same
    (model, step, corpus). A conflicting earlier run is an error.
    """
    checkpoint, mine = unit.checkpoint, list(unit.part) if unit.part else None
    same = [(run_id, p) for run_id, p in store.committed_runs("losses")
            if (p["model"], p["step"], p["corpus"]) == (spec.model, checkpoint.step, spec.corpus)]
    if not same or force:
        return None
    for run_id, p in same:
        if p["dtype"] == spec.dtype and (p["shard"] is None or p["shard"] == mine):
            return run_id
    if any(p["shard"] == mine for _, p in same):
        raise InputError(f"{spec.model} step {checkpoint.step} on {spec.corpus} exists in another dtype; "
                         "pass --force to replace it")
    if any(p["shard"] != mine and p["shard"] is not None and mine is not None and p["shard"][1] == mine[1]
           for _, p in same):
        return None  # another shard of the same split: no overlap
    raise InputError(f"{spec.model} step {checkpoint.step} on {spec.corpus} was ingested with other "
                     "--shard settings; finish those shards or pass --force to replace them")


def _token_budget(batch_size, device, model) -> int:
    # Inference keeps about one layer's activations alive: ~16 hidden-sized vectors a token.
    bytes_per_token = 16 * model.config.hidden_size * next(model.parameters()).element_size()
    return token_budget(batch_size, device, max(1, int(model.config.max_position_embeddings or 1024)), bytes_per_token,
                        gpu_fraction=0.5, cpu_tokens=CPU_TOKEN_BUDGET, min_tokens=1024, max_tokens=MAX_GPU_TOKEN_BUDGET)


def checkpoint_losses(model, doc_ids, sequences, batch_size, device, bar) -> dict[str, np.ndarray]:
    n_ctx = model.config.max_position_embeddings
    if n_ctx and any(len(s) > n_ctx for s in sequences):
        log.warning("documents longer than the model context (%d) are scored on their first %d tokens", n_ctx, n_ctx)
        sequences = [s[:n_ctx] for s in sequences]
    lengths = np.array([len(s) for s in sequences])
    budget = _token_budget(batch_size, device, model)
    per_doc: list[np.ndarray | None] = [None] * len(sequences)
    # Batch i + 1 is padded and queued while batch i still runs; batch i's losses are collected after.
    batches = run_batches(plan_batches(lengths, budget),
                          lambda batch: launch_batch_losses(model, [sequences[i] for i in batch], device))
    waiting = None

    def collect(batch, pending) -> None:
        losses = pending.result()
        for i, loss in zip(batch, losses):
            per_doc[i] = loss
        bar.update(int(sum(len(x) for x in losses)))

    for batch, pending in batches:
        if waiting is not None:
            collect(*waiting)
        waiting = (batch, pending)
    if waiting is not None:
        collect(*waiting)
    scored = [i for i, x in enumerate(per_doc) if x is not None]
    counts = np.array([len(per_doc[i]) for i in scored], dtype=np.int64)
    return {
        "doc_id": np.repeat(doc_ids[scored], counts),
        "pos": np.concatenate([np.arange(1, c + 1, dtype=np.int32) for c in counts]) if scored else np.zeros(0, np.int32),
        "loss_nats": np.concatenate([per_doc[i] for i in scored]) if scored else np.zeros(0, np.float32),
    }


def _prepare_catalog(run, spec: LossSpec, checkpoint, model, corpus_info, replace: bool) -> None:
    stage_model_rows(run, spec.model, checkpoint, model, corpus_info, source=spec.source)
    if replace:
        run.replace("token_losses", model=spec.model, step=checkpoint.step, corpus=spec.corpus)


def _write_and_commit(run, spec: LossSpec, unit: LossUnit, arrays: dict[str, np.ndarray], split) -> JobResult:
    try:
        n = len(arrays["loss_nats"])
        run.write("token_losses", pa.table({
            "model": pa.repeat(spec.model, n), "step": pa.repeat(unit.checkpoint.step, n),
            "corpus": pa.repeat(spec.corpus, n), **arrays, "run_id": pa.repeat(run.run_id, n),
        }))
        if split:
            run.keep_for_split(*split)
            return staged(run, n, split, f"{spec.model} {unit.label}: {n:,} token losses")
        rows = run.commit()
    except BaseException:
        run.abort()
        raise
    return committed(run, rows, f"{spec.model} {unit.label}: {rows:,} token losses")
