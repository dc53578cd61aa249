"""``ingest clusters``: quanta discovery — select low-loss tokens, compute the cosine similarity of
their loss gradients, cluster it spectrally, and store labels, the chosen tokens and the matrix.

``ingest recluster`` (``ingest clusters --from-similarity RUN``) reclusters a stored matrix
without recomputing gradients.

The sketch path splits into shards (``shard`` i/n): shard i computes the sketched gradient rows of
the selected tokens at positions p % n == i and stages them; ``commit --split`` stacks the rows,
takes their cosines and clusters them in shard 0's run. The exact path needs every pair of
full-size gradients, so it stays on one device.
"""

from __future__ import annotations

import json
import math
import shutil
import time

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from quanta_db.errors import InputError
from quanta_db.job import Ingest, JobResult, committed, staged
from quanta_db.params import ParameterError, job_function
from quanta_db.results.corpus.read import load_corpus_tokens
from quanta_db.results.filters.compute import canonical_filter
from quanta_db.results.quanta.gradient_cosine import exact_cosine, sketched_cosine, sketched_rows
from quanta_db.results.quanta.gradients import n_gradient_numbers, select_parameters
from quanta_db.results.quanta.params import ClusterParams, ReclusterParams
from quanta_db.results.quanta.spectral import spectral_clusters
from quanta_db.runtime import models as model_sources
from quanta_db.runtime.device import memory_budget_bytes, resolve_device
from quanta_db.scaleout.plan import partial_states, shard_of, shard_plan, shard_positions, shard_run, stage_partial
from quanta_db.store.store import Store

SIMILARITY_ARTIFACT = "similarity"
CPU_GRADIENT_MEMORY_GB = 4.0


def select_tokens(store: Store, model: str, step: int, corpus: str, loss_below_nats: float,
                  exclude_filter: str | None, n_tokens: int, skip: int) -> pa.Table:
    """Tokens with loss below the threshold, minus the filter, in canonical order: every
    ``skip``-th, then the first ``n_tokens`` (the reference's deterministic selection).

    This is the saved analysis ``quanta_candidates``, so what a user queries is what the job uses.
    """
    if not store.has_files("token_losses", model=model, step=step, corpus=corpus):
        raise InputError(f"no losses of model {model!r} at step {step} on corpus {corpus!r}; "
                         "run `quanta-db ingest losses` first")
    if exclude_filter:
        exclude_filter = canonical_filter(exclude_filter)
        if not store.has_files("token_filters", corpus=corpus, filter=exclude_filter):
            raise InputError(f"filter {exclude_filter!r} was not ingested for corpus {corpus!r}")
    chosen = store.query_arrow(
        "SELECT idx, corpus, doc_id, pos, loss_nats FROM quanta_candidates(?, ?, ?, threshold := ?, "
        "exclude_filter := ?, skip_every := ?, max_tokens := ?)",
        [model, step, corpus, loss_below_nats, exclude_filter, skip, n_tokens],
    )
    if chosen.num_rows == 0:
        raise InputError(f"no token of {corpus!r} has loss below {loss_below_nats:g} nats at {model!r} step {step}"
                         + (f" outside filter {exclude_filter!r}" if exclude_filter else ""))
    return chosen


def _ingest_clusters(store: Store, params: ClusterParams) -> JobResult:
    """Select the low-loss tokens of (model, step, corpus), compute their gradient cosine
    similarity (exact, or CountSketched), cluster it spectrally and commit labels and matrix."""
    model, step, corpus, exclude_filter = params.model, params.step, params.corpus, params.exclude_filter
    sketch, seed, n_clusters = params.sketch, params.seed, params.n_clusters
    identity = params.identity(loss_below_nats=params.loss_below_nats)
    job = Ingest(store, "clusters", identity, params.force)
    if job.previous:
        return job.skipped(f"clustering {job.previous} already has these parameters")
    _see_inputs(store, job.seen, model, step, corpus, exclude_filter)
    chosen = select_tokens(store, model, step, corpus, params.loss_below_nats, exclude_filter, params.n_tokens,
                           params.skip)
    if n_clusters >= chosen.num_rows:
        raise ParameterError("n_clusters", f"{n_clusters} needs more than {chosen.num_rows} selected tokens")
    torch_device = resolve_device(params.device)
    loaded = _load_checkpoint(store, model, step, torch_device)
    parameters = select_parameters(loaded, params.exclude_params)
    doc_ids, sequences = load_corpus_tokens(store, corpus)
    doc_index = {int(d): i for i, d in enumerate(doc_ids)}
    tokens = [(doc_index[int(d)], int(p)) for d, p in zip(chosen.column("doc_id").to_pylist(),
                                                          chosen.column("pos").to_pylist())]
    # An interrupted exact similarity keeps its finished block rows here; the same parameters
    # find the same folder, and gc removes it once no live job owns it.
    storage = getattr(torch, params.grad_dtype)
    block = None if sketch else block_tokens(n_gradient_numbers(parameters), storage, torch_device,
                                             params.grad_memory_gb)
    shard = shard_of(params)
    if shard:
        return _stage_sketch_shard(store, job, params, shard, loaded, parameters, sequences, tokens, chosen,
                                   identity, torch_device)
    resume_dir = store.resume_dir("clusters", identity)
    started = time.perf_counter()
    with tqdm(total=len(tokens), unit="grad", disable=not params.progress, desc="gradients") as bar:
        if sketch:
            cosine = sketched_cosine(loaded, parameters, sequences, tokens, torch_device, sketch, seed,
                                     on_row=bar.update)
        else:
            bar.total = gradient_computations(len(tokens), block)
            cosine = exact_cosine(loaded, parameters, sequences, tokens, torch_device, block, storage,
                                  on_row=bar.update, resume_dir=resume_dir)
    similarity_seconds = time.perf_counter() - started
    with job.begin(device=str(torch_device)) as run:
        job.replace_identical(run, "clusterings", "clustering")
        run.write_artifact(SIMILARITY_ARTIFACT, cosine)
        run.write("similarity_tokens", chosen.append_column("similarity_run", pa.repeat(run.run_id, chosen.num_rows)))
        method = f"sketch:{sketch}" if sketch else "exact"
        summary = _cluster_and_stage(run, chosen, cosine, params.n_clusters, params.n_init, seed, model, step, corpus,
                                     run.run_id, method, identity, similarity_seconds)
        rows = run.commit()
    shutil.rmtree(resume_dir, ignore_errors=True)
    return committed(run, rows, f"clustering {run.run_id}: {chosen.num_rows} tokens into {n_clusters} clusters "
                     f"({method} similarity {similarity_seconds:.1f}s)", summary)


def _ingest_recluster(store: Store, params: ReclusterParams) -> JobResult:
    """Recluster the similarity matrix of clustering run ``from_similarity`` (same tokens)."""
    similarity_run, n_clusters = params.from_similarity, params.n_clusters
    rows = store.catalog_rows("clusterings", run_id=similarity_run)
    if not rows:
        raise ParameterError("from_similarity", f"{similarity_run!r}: that run made no similarity matrix")
    origin = rows[0]
    job = Ingest(store, "clusters", params.identity(), params.force)
    if job.previous:
        return job.skipped(f"clustering {job.previous} already has these parameters")
    cosine = np.asarray(store.artifact(similarity_run, SIMILARITY_ARTIFACT))
    chosen = store.read_fact("similarity_tokens", ["idx", "corpus", "doc_id", "pos", "loss_nats"],
                             partition={"similarity_run": similarity_run}).sort_by("idx")
    if n_clusters >= chosen.num_rows:
        raise ParameterError("n_clusters", f"{n_clusters} needs more than {chosen.num_rows} tokens")
    with job.begin(inputs=[similarity_run]) as run:
        job.replace_identical(run, "clusterings", "clustering")
        summary = _cluster_and_stage(run, chosen, cosine, n_clusters, params.n_init, params.seed, origin["model"],
                                     origin["step"], origin["corpus"], similarity_run, origin["similarity_method"],
                                     params.identity(), 0.0)
        written = run.commit()
    return committed(run, written, f"clustering {run.run_id}: {chosen.num_rows} tokens of {similarity_run} into "
                     f"{n_clusters} clusters", summary)


def _stage_sketch_shard(store, job, params: ClusterParams, shard, loaded, parameters, sequences, tokens, chosen,
                        identity, torch_device) -> JobResult:
    positions = shard_positions(len(tokens), shard)
    started = time.perf_counter()
    with tqdm(total=len(positions), unit="grad", disable=not params.progress, desc="gradients") as bar:
        rows = sketched_rows(loaded, parameters, sequences, [tokens[p] for p in positions], torch_device,
                             params.sketch, params.seed, on_row=bar.update)
    state = {"rows": rows.cpu(), "positions": positions, "chosen": chosen, "params": params, "identity": identity,
             "seconds": time.perf_counter() - started}
    with shard_run(store, job, shard, str(torch_device)) as run:
        if shard[0] == 0:
            job.replace_identical(run, "clusterings", "clustering")
        plan = clusters_plan(params, shard[1])
        stage_partial(store, run, plan, shard, params, "clusters", state,
                      merge="quanta_db.results.quanta.job:merge_sketch_shards")
    return staged(run, 0, (plan.split, shard), f"sketched gradients of {len(positions)} of {len(tokens)} tokens "
                  f"(shard {shard[0]}/{shard[1]})")


def clusters_plan(params: ClusterParams, shards: int):
    """The split of this job into ``shards`` (``--plan``): the selected tokens at positions p % n == i."""
    if params.sketch is None:
        raise ParameterError("shard", "needs --sketch DIM: the exact similarity runs on one device")
    return shard_plan("clusters", params, [f"selected tokens {i}/{shards}" for i in range(shards)], shards)


def merge_sketch_shards(store, runs):
    """``commit --split`` of a sketched clustering: the shards' rows stacked in token order, their
    cosines clustered and staged in shard 0's run; (runs to commit, runs to discard once committed)."""
    states = partial_states(runs)
    first_state = states[0]
    params, chosen = first_state["params"], first_state["chosen"]
    rows = torch.empty(chosen.num_rows, params.sketch, dtype=torch.float32)
    for state in states:
        rows[torch.as_tensor(state["positions"])] = state["rows"]
    cosine = (rows @ rows.T).numpy()
    seconds = max(state["seconds"] for state in states)  # the shards ran side by side
    first = runs[0]
    first.reopen()
    first.write_artifact(SIMILARITY_ARTIFACT, cosine)
    first.write("similarity_tokens", chosen.append_column("similarity_run", pa.repeat(first.run_id, chosen.num_rows)))
    _cluster_and_stage(first, chosen, cosine, params.n_clusters, params.n_init, params.seed, params.model, params.step,
                       params.corpus, first.run_id, f"sketch:{params.sketch}", first_state["identity"], seconds)
    return [first], runs[1:]


ingest_clusters = job_function(ClusterParams, _ingest_clusters)
ingest_recluster = job_function(ReclusterParams, _ingest_recluster)


def _see_inputs(store: Store, seen, model: str, step: int, corpus: str, exclude_filter: str | None) -> None:
    """What a clustering reads: the corpus, its losses at (model, step) and the filter."""
    store.see(seen, "corpora", is_input=True, corpus=corpus)
    store.see(seen, "token_losses", is_input=True, model=model, step=step, corpus=corpus)
    if exclude_filter:
        store.see(seen, "token_filters", is_input=True, corpus=corpus, filter=canonical_filter(exclude_filter))


def _cluster_and_stage(run, chosen: pa.Table, cosine, n_clusters, n_init, seed, model, step, corpus,
                       similarity_run, method, params, similarity_seconds) -> dict:
    started = time.perf_counter()
    labels = spectral_clusters(cosine, n_clusters, n_init, seed)
    clustering_seconds = time.perf_counter() - started
    n = chosen.num_rows
    run.write("cluster_labels", pa.table({
        "clustering": pa.repeat(run.run_id, n), "corpus": chosen.column("corpus"), "doc_id": chosen.column("doc_id"),
        "pos": chosen.column("pos"), "cluster": labels.astype(np.int32),
    }))
    run.upsert("clusterings", [{
        "clustering": run.run_id, "model": model, "step": int(step), "corpus": corpus, "similarity_run": similarity_run,
        "similarity_method": method, "n_tokens": n, "n_clusters": n_clusters, "params": json.dumps(params, sort_keys=True),
        "similarity_seconds": similarity_seconds, "clustering_seconds": clustering_seconds, "run_id": run.run_id,
    }], key=["clustering"])
    return {"labels": labels, "similarity_seconds": similarity_seconds, "clustering_seconds": clustering_seconds}


def _load_checkpoint(store: Store, model: str, step: int, device):
    rows = store.catalog_rows("checkpoints", model=model, step=step)
    if not rows:
        raise InputError(f"unknown checkpoint {model!r} step {step}; ingest its losses first")
    checkpoint = model_sources.Checkpoint(int(step), rows[0]["revision"], rows[0]["source"])
    return model_sources.load_model(checkpoint, torch.float32, device)


def block_tokens(n_numbers: int, storage, device, memory_gb: float | None) -> int:
    """Gradient rows per block so that two blocks fit the memory budget."""
    budget = memory_budget_bytes(device, gpu_fraction=0.7, cpu_bytes=CPU_GRADIENT_MEMORY_GB * 2**30,
                                 override_gb=memory_gb)
    bytes_per_row = n_numbers * torch.tensor([], dtype=storage).element_size()
    return max(1, int(budget / (2 * bytes_per_row)))


def gradient_computations(n: int, block: int) -> int:
    """Gradients computed by :func:`exact_cosine`: block i once for itself and once per earlier block."""
    blocks = math.ceil(n / block)
    return sum(min(block, n - i * block) * (1 + i) for i in range(blocks))
