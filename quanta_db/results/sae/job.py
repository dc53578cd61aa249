"""``ingest sae``: how every feature of an SAE behaves on a corpus, and how good the SAE is.

One streaming pass: documents in length-sorted batches run through the model up to the SAE's
hook, the SAE encodes and decodes the activations, and :class:`FeatureStatistics` accumulates
on the device. The CE-loss metrics splice the reconstruction (or zeros) into full forwards, as
sae-lens ``get_recons_loss`` does, on the first documents of the corpus (in corpus order, whole)
until they hold at least ``ce_tokens`` tokens — so usually somewhat more (the losses are means over
all the tokens of those documents).

Split into shards (``shard`` i/n), shard i streams the documents at positions p with p % n == i,
with the tokens' global indices; every shard stages its statistics' state, shard 0 also the
catalog rows, and ``quanta-db commit --split`` merges the states
(:meth:`FeatureStatistics.merge_state`) into the one run an unsplit job would have committed.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from quanta_db.errors import InputError
from quanta_db.job import Ingest, JobResult, committed, staged
from quanta_db.params import job_function
from quanta_db.results.baselines.dictionary import active_codes
from quanta_db.results.corpus.read import corpus_row, first_tokens, load_corpus_tokens
from quanta_db.results.losses.compute import batch_token_losses
from quanta_db.results.losses.models import resolve_model
from quanta_db.results.sae import outputs
from quanta_db.results.sae.loading import LoadedSAE, check_against_model, load_sae
from quanta_db.results.sae.params import SaeParams
from quanta_db.results.sae.stats import FeatureStatistics
from quanta_db.runtime import device as runtime_device
from quanta_db.runtime import models as model_sources
from quanta_db.runtime.activations import batch_activations, document_starts
from quanta_db.runtime.batching import plan_batches, run_batches
from quanta_db.runtime.device import parse_batch_size, resolve_device, resolve_dtype
from quanta_db.runtime.hooks import replace_activation
from quanta_db.scaleout.plan import partial_states, shard_of, shard_plan, shard_positions, shard_run, stage_partial
from quanta_db.store.store import Store

CPU_TOKEN_BUDGET = 4096
MAX_TOKEN_BUDGET = 65536


def _ingest_sae(store: Store, params: SaeParams) -> JobResult:
    """Feature statistics, examples, logit effects and metrics of SAE ``sae`` on ``corpus``."""
    corpus, n_tokens, top_k, ce_tokens, seed, force = (params.corpus, params.n_tokens, params.top_k, params.ce_tokens,
                                                       params.seed, params.force)
    device, dtype, batch_size, progress = params.device, params.dtype, params.batch_size, params.progress
    torch_device, torch_dtype = resolve_device(device), resolve_dtype(dtype)
    loaded = load_sae(params.sae, params.sae_id, torch_device, params.name, root=store.root)
    corpus_info = corpus_row(store, corpus)
    model_name, checkpoint, known = resolve_model(store, params.model, params.step, corpus_info)
    lm = model_sources.load_model(checkpoint, torch_dtype, torch_device)
    hook = check_against_model(loaded, lm, model_name)
    loaded.sae.to(torch_dtype)  # the SAE runs in the model's dtype; statistics accumulate in float32/64
    job = Ingest(store, "sae", params.identity(sae=loaded.name, config_hash=loaded.config_hash, model=model_name,
                                               step=checkpoint.step), force)
    if job.previous:
        return job.skipped(f"SAE {loaded.name!r} on {corpus!r}: already ingested")
    seen = job.seen
    registered = _check_name(store, loaded, force)
    if store.see(seen, "sae_features", sae=loaded.name, corpus=corpus) and not force:
        raise InputError(f"SAE {loaded.name!r} on {corpus!r} was ingested with other parameters; pass --force")
    store.see(seen, "corpora", is_input=True, corpus=corpus)
    doc_ids, sequences = first_tokens(*load_corpus_tokens(store, corpus), n_tokens)
    if not sequences:
        raise InputError(f"corpus {corpus!r} has no documents")
    shard = shard_of(params)
    positions = shard_positions(len(sequences), shard)
    stats, ce = _stream(lm, loaded, hook.name, sequences, positions, batch_size, torch_device, ce_tokens, top_k, seed,
                        progress)
    first = shard is None or shard[0] == 0
    run = shard_run(store, job, shard, str(torch_device)) if shard else job.begin(device=str(torch_device))
    with run:
        if first:
            logits = outputs.feature_logits(loaded, lm) if registered != "same" else None
            outputs.stage_catalog(run, loaded, model_name, checkpoint, lm, corpus_info, hook.layer, registered, known,
                                  logits)
            for table in ("sae_features", "feature_examples", "feature_histograms", "sae_metrics"):
                run.replace(table, sae=loaded.name, corpus=corpus)
        if shard:
            return _stage_shard(store, run, params, shard, stats, ce, doc_ids, sequences, loaded)
        summary = outputs.stage_statistics(run, loaded, corpus, stats, ce, doc_ids, document_starts(sequences))
        rows = run.commit()
    return committed(run, rows, _message(loaded, corpus, summary), summary)


ingest_sae = job_function(SaeParams, _ingest_sae)


def _message(loaded: LoadedSAE, corpus: str, summary: dict) -> str:
    return (f"SAE {loaded.name!r} on {corpus!r}: {summary['n_tokens']:,} tokens, {summary['n_dead']} dead of "
            f"{loaded.sae.cfg.d_sae} features, L0 {summary['l0']:.1f}, explained variance "
            f"{summary['explained_variance']:.3f}")


def sae_plan(params: SaeParams, shards: int):
    """The split of this job into ``shards`` (``--plan``): document parts (shard 0 also stages the
    catalog rows and the logit effects)."""
    return shard_plan("sae", params, [f"documents {i}/{shards}" for i in range(shards)], shards)


def _stage_shard(store, run, params: SaeParams, shard, stats, ce, doc_ids, sequences, loaded) -> JobResult:
    state = {"stats": stats.state(), "ce": ce, "doc_ids": doc_ids, "starts": document_starts(sequences), "params": params}
    plan = sae_plan(params, shard[1])
    stage_partial(store, run, plan, shard, params, "sae", state, merge="quanta_db.results.sae.job:merge_shards")
    return staged(run, 0, (plan.split, shard), f"SAE {loaded.name!r} on {params.corpus!r}: "
                  f"{stats.n_tokens:,} tokens of shard {shard[0]}/{shard[1]}")


def merge_shards(store, runs):
    """``commit --split`` of an SAE split: the shards' statistics merged and staged in shard 0's run
    (which holds the catalog rows); (runs to commit, runs to discard once committed)."""
    partials = partial_states(runs)
    stats = FeatureStatistics.from_state(partials[0]["stats"])
    for partial in partials[1:]:
        stats.merge_state(partial["stats"])
    ce = {key: sum(p["ce"][key] for p in partials) for key in partials[0]["ce"]}
    params = partials[0]["params"]
    loaded = load_sae(params.sae, params.sae_id, torch.device("cpu"), params.name, root=store.root)
    first = runs[0]
    first.reopen()
    outputs.stage_statistics(first, loaded, params.corpus, stats, ce, partials[0]["doc_ids"], partials[0]["starts"])
    return [first], runs[1:]




def _check_name(store: Store, loaded: LoadedSAE, force: bool) -> str:
    """'new', 'same' (this SAE is registered under its name) or 'replace' (--force over another)."""
    rows = store.catalog_rows("saes", sae=loaded.name)
    if not rows:
        return "new"
    if rows[0]["config_hash"] == loaded.config_hash:
        return "same"
    if not force:
        raise InputError(f"SAE name {loaded.name!r} is already used for a different SAE; pass --name or --force "
                         "(which replaces it and everything computed from it)")
    return "replace"


def token_budget(batch_size, device, d_sae: int, d_model: int, n_ctx: int) -> int:
    """Tokens per batch: ``batch_size`` windows of ``n_ctx``, or for "auto" what 30% of the free
    device memory holds (a CPU budget of 4,096 tokens), at most 65,536."""
    # float32 features, the SAE's pre-activations and reconstruction inputs, the model's activations
    # (the active-entry lists are bounded separately, by FeatureStatistics.max_entries)
    bytes_per_token = 4 * (4 * d_sae + 16 * d_model)
    return runtime_device.token_budget(batch_size, device, n_ctx, bytes_per_token, gpu_fraction=0.3,
                                       cpu_tokens=CPU_TOKEN_BUDGET, max_tokens=MAX_TOKEN_BUDGET)


def _stream(lm, loaded: LoadedSAE, hook_name: str, sequences, positions, batch_size, device, ce_tokens: int,
            top_k: int, seed: int, progress: bool):
    """Statistics of the documents at ``positions`` of ``sequences`` (tokens indexed globally), and
    the CE sums of those among the first documents that hold ``ce_tokens`` tokens."""
    sae = loaded.sae
    n_ctx = lm.config.max_position_embeddings
    starts = document_starts(sequences)  # of the documents as given: the examples map indices back with these
    in_ce = starts < ce_tokens
    sequences = [s[:n_ctx] for s in sequences]
    stats = FeatureStatistics(sae.cfg.d_sae, device, top_k=top_k, seed=seed)
    ce = {"clean": 0.0, "sae": 0.0, "zero": 0.0, "n": 0}
    budget = token_budget(parse_batch_size(batch_size), device, sae.cfg.d_sae, lm.config.hidden_size, n_ctx)
    batches = [positions[b] for b in plan_batches(np.array([len(sequences[p]) for p in positions]), budget,
                                                  min_length=1)]
    total = sum(len(sequences[p]) for p in positions)
    with tqdm(total=total, unit="tok", unit_scale=True, disable=not progress, desc=f"SAE {loaded.name}") as bar:
        def one_batch(batch):
            chosen = [sequences[i] for i in batch]
            x, feats, x_hat = _encode(lm, sae, hook_name, chosen, device)
            index = torch.from_numpy(np.concatenate([starts[i] + np.arange(len(sequences[i])) for i in batch]))
            stats.add(x, feats, x_hat, index)
            _add_ce_losses(lm, sae, hook_name, [sequences[i] for i in batch if in_ce[i] and len(sequences[i]) > 1],
                           device, ce)
            return len(x)

        for _, n in run_batches(batches, one_batch):
            bar.update(n)
    return stats, ce


@torch.no_grad()
def _encode(lm, sae, hook_name: str, chosen: list[np.ndarray], device):
    x = batch_activations(lm, chosen, [hook_name], device)[hook_name]
    feats = sae.encode(x)
    x_hat = sae.decode(feats)
    if not torch.isfinite(x).all():  # the features' own check rides on their sparse listing (stats)
        raise InputError(f"activations at {hook_name} are not finite (NaN/inf); check the model's dtype and weights")
    return x, active_codes(sae, feats), x_hat


def _add_ce_losses(lm, sae, hook_name: str, chosen: list[np.ndarray], device, ce: dict) -> None:
    """Mean next-token loss with the hook's activation as is, as the SAE's reconstruction, and zeroed."""
    if not chosen:
        return
    z_shaped = hook_name.endswith("hook_z")

    def reconstruct(acts):
        flat = acts.flatten(-2) if z_shaped else acts
        out = sae.decode(sae.encode(flat)).to(flat.dtype)
        return out.unflatten(-1, acts.shape[-2:]) if z_shaped else out

    clean = np.concatenate(batch_token_losses(lm, chosen, device))
    with replace_activation(lm, hook_name, reconstruct):
        spliced = np.concatenate(batch_token_losses(lm, chosen, device))
    with replace_activation(lm, hook_name, torch.zeros_like):
        zeroed = np.concatenate(batch_token_losses(lm, chosen, device))
    ce["clean"] += float(clean.sum(dtype=np.float64))
    ce["sae"] += float(spliced.sum(dtype=np.float64))
    ce["zero"] += float(zeroed.sum(dtype=np.float64))
    ce["n"] += len(clean)
