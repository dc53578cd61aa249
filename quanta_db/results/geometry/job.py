"""``ingest geometry``: what the activation space at each hook looks like, per checkpoint.

One streaming pass per checkpoint over the first ``n_tokens`` tokens of the corpus captures every
requested hook at once (the model runs only as far as the deepest); :class:`ActivationMoments`
accumulates exact float64 moments and the co-moment matrix on the device, and per dimension the
``top_k`` tokens of largest |activation| are kept. One run per checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from quanta_db.errors import InputError
from quanta_db.job import Ingest, JobResult, committed
from quanta_db.params import job_function
from quanta_db.results.corpus.read import corpus_row, first_tokens, load_corpus_tokens
from quanta_db.results.geometry.moments import ActivationMoments
from quanta_db.results.geometry.params import GeometryParams
from quanta_db.results.losses.models import resolve_model, stage_model_rows
from quanta_db.results.sae.stats import merge_largest
from quanta_db.runtime import device as runtime_device
from quanta_db.runtime import models as model_sources
from quanta_db.runtime.activations import document_starts, hook_width, stream_activations
from quanta_db.runtime.hooks import parse_hook_name
from quanta_db.store.store import Store

TABLES = ("activation_dimensions", "activation_summary", "activation_spectrum", "activation_top_tokens")
CPU_TOKEN_BUDGET = 4096


def _ingest_geometry(store: Store, params: GeometryParams) -> list[JobResult]:
    """Activation statistics of ``hooks`` of every requested checkpoint of ``model`` on ``corpus``."""
    if not params.progress:
        model_sources.silence_library_progress()
    corpus_info = corpus_row(store, params.corpus)
    device = runtime_device.resolve_device(params.device)
    doc_ids, sequences = first_tokens(*load_corpus_tokens(store, params.corpus), params.n_tokens)
    if not sequences:
        raise InputError(f"corpus {params.corpus!r} has no documents")
    results = []
    for step in _steps(store, params.model, params.steps):
        model_name, checkpoint, known = resolve_model(store, params.model, step, corpus_info)
        job = Ingest(store, "geometry", params.identity(model=model_name, step=checkpoint.step), params.force)
        label = f"{model_name}@{checkpoint.step} on {params.corpus!r}"
        if job.previous:
            results.append(job.skipped(f"geometry of {label}: already ingested"))
            continue
        for hook in params.hooks:
            if store.see(job.seen, "activation_summary", model=model_name, step=checkpoint.step,
                         corpus=params.corpus, hook=hook) and not params.force:
                raise InputError(f"geometry of {hook} of {label} was ingested with other parameters; pass --force")
        store.see(job.seen, "corpora", is_input=True, corpus=params.corpus)
        lm = model_sources.load_model(checkpoint, torch.float32, device)
        stats = _stream(lm, params, sequences, device, label)
        with job.begin(device=str(device)) as run:
            if not known:
                stage_model_rows(run, model_name, checkpoint, lm, corpus_info)
            key = {"model": model_name, "step": checkpoint.step, "corpus": params.corpus}
            for hook, (moments, top) in stats.items():
                for table in TABLES:
                    run.replace(table, **key, hook=hook)
                _stage_hook(run, {**key, "hook": hook}, moments, top, doc_ids, document_starts(sequences))
            rows = run.commit()
        results.append(committed(run, rows, f"geometry of {label}: {len(params.hooks)} hooks, "
                                            f"{next(iter(stats.values()))[0].n:,} tokens"))
    return results


ingest_geometry = job_function(GeometryParams, _ingest_geometry)


def _steps(store: Store, model: str, steps) -> list[int | None]:
    """The steps asked for; none asked: every checkpoint the store knows of the model, or the
    checkpoints of a local folder."""
    if steps:
        return list(steps)
    known = store.catalog_rows("checkpoints", model=model)
    if known:
        return sorted(row["step"] for row in known)
    if Path(model).is_dir():
        return [c.step for c in model_sources.resolve_checkpoints(model)]
    return [None]  # a hub name: its main revision


class TopTokens:
    """Per dimension the ``k`` entries of largest |activation| seen so far, with their tokens."""

    def __init__(self, d: int, k: int, device):
        self.keys = torch.full((d, k), -torch.inf, device=device)
        self.tokens = torch.full((d, k), -1, dtype=torch.int64, device=device)
        self.values = torch.zeros((d, k), device=device)

    def add(self, x: torch.Tensor, token_index: torch.Tensor) -> None:
        k = min(self.keys.shape[1], x.shape[0])
        best = x.abs().topk(k, dim=0).indices.T  # [d, k] rows of the batch: candidates only
        d = x.shape[1]
        feature = torch.arange(d, device=x.device).repeat_interleave(k)
        rows = best.reshape(-1)
        value = x[rows, feature]
        merge_largest(self.keys, [self.tokens, self.values], feature, value.abs(),
                      [token_index.to(x.device)[rows], value])


def _stream(lm, params: GeometryParams, sequences, device, label: str) -> dict:
    """(moments, top tokens) per hook over ``sequences``."""
    widths = {hook: hook_width(lm, hook) for hook in params.hooks}
    stats = {hook: (ActivationMoments(width, device), TopTokens(width, params.top_k, device))
             for hook, width in widths.items()}
    bytes_per_token = 8 * (sum(widths.values()) * 3 + lm.config.hidden_size * 16)
    budget = runtime_device.token_budget(runtime_device.parse_batch_size(params.batch_size), device,
                                         lm.config.max_position_embeddings, bytes_per_token, gpu_fraction=0.3,
                                         cpu_tokens=CPU_TOKEN_BUDGET, max_tokens=65536)
    for acts, index in stream_activations(lm, sequences, list(params.hooks), device, budget, params.progress,
                                          desc=f"geometry {label}"):
        for hook, x in acts.items():
            stats[hook][0].add(x)
            stats[hook][1].add(x, index)
    return stats


def _stage_hook(run, key: dict, moments: ActivationMoments, top: TopTokens, doc_ids, starts) -> None:
    layer = parse_hook_name(key["hook"]).layer
    columns = moments.dimensions()
    d = len(columns["mean"])
    repeat = lambda n: {name: pa.repeat(value, n) for name, value in key.items()}  # noqa: E731
    run.write("activation_dimensions", pa.table({**repeat(d), "dim": np.arange(d, dtype=np.int32), **columns}))
    spectrum = moments.spectrum()
    run.write("activation_summary", pa.Table.from_pylist([{**key, "layer": layer, **moments.summary(spectrum)}]))
    total = spectrum.sum()
    fractions = spectrum / total if total > 0 else np.zeros_like(spectrum)
    run.write("activation_spectrum", pa.table({
        **repeat(d), "rank": np.arange(d, dtype=np.int32), "eigenvalue": spectrum, "variance_fraction": fractions,
        "cumulative_fraction": np.cumsum(fractions)}))
    tokens = top.tokens.cpu().numpy()
    dim, rank = np.nonzero(tokens >= 0)
    index = tokens[dim, rank]
    doc = np.searchsorted(starts, index, side="right") - 1
    run.write("activation_top_tokens", pa.table({
        **repeat(len(dim)), "dim": dim.astype(np.int32), "rank": rank.astype(np.int32),
        "doc_id": doc_ids[doc].astype(np.int64), "pos": (index - starts[doc]).astype(np.int32),
        "activation": top.values.cpu().numpy()[dim, rank].astype(np.float32)}))
