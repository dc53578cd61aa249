"""``ingest baselines``: fit a PCA / ICA / NMF dictionary to a hook's activations and register it as
an SAE.

The fit reads the first ``n_tokens`` tokens of the corpus at the hook. The dictionary is saved as a
sae-lens folder (:mod:`quanta_db.results.baselines.dictionary`) under ``<store>/dictionaries/`` —
written to a temporary folder, then moved to a name that ends in a hash of its files; ``saes.source``
holds that path relative to the store, which ``load_sae`` resolves against the store — and then
goes through ``ingest sae`` like any SAE. That one run registers it in ``saes`` (architecture =
the method) with its statistics and metrics, so everything built on SAEs reads it unchanged.
Nothing reaches the catalog if any step fails, and a folder this job created is removed again.

The fit's description (method, K, tokens, seed, corpus, model, step, hook, threshold, the tokens it
is scored on) is kept in the dictionary's config metadata (``quanta_db_fit``): the same job again
finds it there and does nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import uuid
from pathlib import Path

import torch

from quanta_db.errors import InputError
from quanta_db.job import JobResult
from quanta_db.params import job_function
from quanta_db.results.baselines import dictionary
from quanta_db.results.baselines.fit import check_width, fit_dictionary
from quanta_db.results.baselines.params import BaselineParams
from quanta_db.results.corpus.read import corpus_row, first_tokens, load_corpus_tokens
from quanta_db.results.losses.models import resolve_model
from quanta_db.results.sae.job import ingest_sae
from quanta_db.results.sae.loading import SUPPORTED_POINTS
from quanta_db.runtime import device as runtime_device
from quanta_db.runtime import models as model_sources
from quanta_db.runtime.activations import hook_width, stream_activations
from quanta_db.runtime.hooks import parse_hook_name, transformer_layers
from quanta_db.store.store import Store

DICTIONARIES_DIR = "dictionaries"
CPU_TOKEN_BUDGET = 4096


def _ingest_baselines(store: Store, params: BaselineParams) -> JobResult:
    """Fit, save and score one dictionary baseline (see the module docstring)."""
    if not params.progress:
        model_sources.silence_library_progress()
    device = runtime_device.resolve_device(params.device)
    corpus_info = corpus_row(store, params.corpus)
    model_name, checkpoint, _ = resolve_model(store, params.model, params.step, corpus_info)
    lm = model_sources.load_model(checkpoint, torch.float32, device)
    width = _check_hook(lm, params.hook)
    k = params.n_components or width
    check_width(k, width, params.hook)
    name = params.name or f"{model_name}@{checkpoint.step}-{params.hook}-{params.method}{k}"
    fit_description = {"method": params.method, "n_components": k, "n_tokens": params.n_tokens, "seed": params.seed,
                       "corpus": params.corpus, "model": model_name, "step": checkpoint.step, "hook": params.hook,
                       "l0_threshold": params.l0_threshold, "eval_tokens": params.eval_tokens}
    if _already_fitted(store, name, fit_description, params.force):
        return JobResult(None, 0, skipped=True, message=f"baseline {name!r}: already fitted and ingested")
    started = time.perf_counter()
    x = _fit_activations(store, lm, params, device)
    fit = fit_dictionary(params.method, x, k, params.seed, params.hook)
    fit_description.update(fit_tokens=len(x), fit_seconds=round(time.perf_counter() - started, 3),
                           n_iter=fit.n_iter, converged=fit.converged)
    sae = dictionary.build(params.method, fit.w_enc, fit.w_dec, fit.b_dec, params.hook, model_name,
                           params.l0_threshold, fit_description)
    del x
    folder, created = save_dictionary(Path(store.root), name, sae)
    try:
        result = ingest_sae(store, str(folder.relative_to(store.root)), params.corpus, params.model,
                            step=checkpoint.step, name=name, n_tokens=params.eval_tokens, seed=params.seed, device=params.device,
                            batch_size=params.batch_size, force=params.force, progress=params.progress)
    except BaseException:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    note = "" if fit.converged else f" (stopped at {fit.n_iter} iterations before converging)"
    result.message = f"{params.method.upper()} baseline fitted in {fit_description['fit_seconds']:.1f} s{note}; " \
                     + result.message
    result.details = {**result.details, "sae": name, "folder": str(folder), "fit": fit_description}
    return result


ingest_baselines = job_function(BaselineParams, _ingest_baselines)


def _check_hook(lm, hook_name: str) -> int:
    """The hook's width; a hook the model lacks or that SAEs cannot read is a one-line error."""
    hook = parse_hook_name(hook_name, len(transformer_layers(lm)))
    if hook.point not in SUPPORTED_POINTS:
        raise InputError(f"hook {hook_name}: dictionaries on {hook.point} are not supported "
                         f"(supported: {', '.join(SUPPORTED_POINTS)})")
    return hook_width(lm, hook_name)


def _already_fitted(store: Store, name: str, fit_description: dict, force: bool) -> bool:
    rows = store.catalog_rows("saes", sae=name)
    if not rows or force:
        return False
    recorded = json.loads(rows[0]["config"]).get("metadata", {}).get("quanta_db_fit") or {}
    if all(recorded.get(key) == value for key, value in fit_description.items()):
        return True
    raise InputError(f"SAE name {name!r} is already used for another SAE or dictionary; pass --name or --force "
                     "(which replaces it and everything computed from it)")


def _fit_activations(store: Store, lm, params: BaselineParams, device) -> torch.Tensor:
    """[tokens, width] float32 activations at the hook of the first ``n_tokens`` corpus tokens."""
    _, sequences = first_tokens(*load_corpus_tokens(store, params.corpus), params.n_tokens)
    if not sequences:
        raise InputError(f"corpus {params.corpus!r} has no documents")
    width = hook_width(lm, params.hook)
    budget = runtime_device.token_budget(runtime_device.parse_batch_size(params.batch_size), device,
                                         lm.config.max_position_embeddings, 4 * (16 * lm.config.hidden_size + width),
                                         gpu_fraction=0.2, cpu_tokens=CPU_TOKEN_BUDGET, max_tokens=65536)
    parts = [acts[params.hook] for acts, _ in stream_activations(lm, sequences, [params.hook], device, budget,
                                                                  params.progress, desc=f"activations {params.hook}")]
    return torch.cat(parts)


def save_dictionary(root: Path, name: str, sae) -> tuple[Path, bool]:
    """Save ``sae`` under ``<root>/dictionaries/<name>-<hash of its files>`` through a temporary
    folder and a move; (folder, whether this call created it)."""
    base = Path(root) / DICTIONARIES_DIR
    base.mkdir(parents=True, exist_ok=True)
    temporary = base / f".tmp-{uuid.uuid4().hex}"
    try:
        sae.save_model(temporary)
        digest = hashlib.sha256()
        for path in sorted(temporary.iterdir()):
            digest.update(path.name.encode() + path.read_bytes())
        folder = base / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}-{digest.hexdigest()[:12]}"
        if folder.is_dir():
            return folder, False
        try:
            temporary.rename(folder)
        except OSError:  # an identical job saved the same files first: theirs serve both
            if folder.is_dir():
                return folder, False
            raise
        return folder, True
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
