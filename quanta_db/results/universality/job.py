"""``ingest feature-pairs``: correlate the features of two registered SAEs over the same tokens.

Both models read the same token sequences (the corpus's, so the same tokenizer, checked); per
batch each model runs to its SAE's hook, each SAE encodes its real positions, and
:class:`CrossCorrelation` accumulates on the device. The pairing keeps each feature's top-k
partners and, when it is small enough, the whole matrix as a run artifact.

Split into shards (``shard`` i/n), shard i correlates the documents at positions p % n == i of
the tokens used and stages its sums; ``commit --split`` adds them up (the correlation's
sufficient statistics merge) and stages the pairing in shard 0's run.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import torch
from tqdm.auto import tqdm

from quanta_db.errors import InputError
from quanta_db.job import Ingest, JobResult, committed, staged
from quanta_db.params import ParameterError, job_function
from quanta_db.results.corpus.read import corpus_row, first_tokens, load_corpus_tokens
from quanta_db.results.sae.loading import check_against_model, load_sae
from quanta_db.results.universality.pairing import CrossCorrelation, top_partners
from quanta_db.results.universality.params import (
    BASELINES,
    FeatureMatchParams,
    FeaturePairParams,
    MetricParams,
)
from quanta_db.runtime import models as model_sources
from quanta_db.runtime.activations import batch_activations
from quanta_db.runtime.batching import plan_batches
from quanta_db.runtime.device import resolve_device
from quanta_db.scaleout.plan import partial_states, shard_of, shard_plan, shard_positions, shard_run, stage_partial
from quanta_db.store.store import Store

CORRELATION_ARTIFACT = "correlation"
# The whole matrix is kept (float32 .npy) up to 2^31 correlations (8 GiB): 32k x 32k SAEs fit, and
# matching reads it memory-mapped.
MAX_ARTIFACT_ENTRIES = 1 << 31
TOKEN_BUDGET = 8192


def _ingest_feature_pairs(store: Store, params: FeaturePairParams) -> JobResult:
    """Pearson correlation of every feature of ``sae_a`` with every feature of ``sae_b``."""
    sae_a, sae_b, corpus, n_tokens = params.sae_a, params.sae_b, params.corpus, params.n_tokens
    torch_device = resolve_device(params.device)
    info = corpus_row(store, corpus)
    sides = [_load_side(store, name, info, torch_device) for name in (sae_a, sae_b)]
    job = Ingest(store, "feature_pairs", params.identity(config_hashes=[s["hash"] for s in sides]), params.force)
    if job.previous:
        return job.skipped(f"pairing {job.previous} has these parameters")
    seen = job.seen
    for name in (sae_a, sae_b):
        store.see(seen, "saes", is_input=True, sae=name)
    store.see(seen, "corpora", is_input=True, corpus=corpus)
    _, sequences = first_tokens(*load_corpus_tokens(store, corpus), n_tokens)
    shard = shard_of(params)
    sequences = [sequences[p] for p in shard_positions(len(sequences), shard)]
    accumulator = _correlate(sides, sequences, torch_device, params.progress)
    if shard:
        with shard_run(store, job, shard, str(torch_device)) as run:
            plan = feature_pairs_plan(params, shard[1])
            stage_partial(store, run, plan, shard, params, "feature-pairs", {"sums": accumulator.state(), "params": params},
                          merge="quanta_db.results.universality.job:merge_pair_shards")
        return staged(run, 0, (plan.split, shard), f"feature pairs of {sae_a!r} and {sae_b!r}: "
                      f"{accumulator.n:,} tokens of shard {shard[0]}/{shard[1]}")
    correlation = accumulator.correlation_tensor()
    with job.begin(device=str(torch_device)) as run:
        _stage_pairing(run, params, correlation)
        written = run.commit()
    largest = float(correlation.abs().nan_to_num(nan=-1).max())
    return committed(run, written, f"pairing {run.run_id}: {correlation.shape[0]} x {correlation.shape[1]} features "
                     f"over {accumulator.n:,} tokens, max |corr| {largest if largest >= 0 else float('nan'):.3f}")


def _stage_pairing(run, params: FeaturePairParams, correlation: torch.Tensor) -> None:
    rows = top_partners(correlation, params.top_k)
    a, b, corr, rank, side = (list(c) for c in zip(*rows)) if rows else ([], [], [], [], [])
    run.write("feature_pairs", pa.table({
        "pairing": pa.repeat(run.run_id, len(a)), "sae_a": pa.repeat(params.sae_a, len(a)),
        "feature_a": pa.array(a, pa.int32()), "sae_b": pa.repeat(params.sae_b, len(a)),
        "feature_b": pa.array(b, pa.int32()), "corr": pa.array(corr, pa.float64()),
        "rank": pa.array(rank, pa.int32()), "side": pa.array(side, pa.string()),
    }))
    if correlation.numel() <= MAX_ARTIFACT_ENTRIES:
        run.write_artifact(CORRELATION_ARTIFACT, correlation.cpu().numpy())


def feature_pairs_plan(params: FeaturePairParams, shards: int):
    """The split of this job into ``shards`` (``--plan``): document parts of the tokens used."""
    return shard_plan("feature_pairs", params, [f"documents {i}/{shards}" for i in range(shards)], shards)


def merge_pair_shards(store, runs):
    """``commit --split`` of a feature-pairs split: the shards' sums added, the pairing staged in
    shard 0's run; (runs to commit, runs to discard once committed)."""
    states = partial_states(runs)
    correlation = CrossCorrelation.from_states([s["sums"] for s in states]).correlation_tensor()
    first = runs[0]
    first.reopen()
    _stage_pairing(first, states[0]["params"], correlation)
    return [first], runs[1:]


def _load_side(store: Store, name: str, corpus_info: dict, device) -> dict:
    rows = store.catalog_rows("saes", sae=name)
    if not rows:
        raise InputError(f"unknown SAE {name!r}; register it with `quanta-db ingest sae` first")
    row = rows[0]
    loaded = _registered_sae(store, row, device)
    model = store.catalog_rows("models", model=row["model"])
    if model and model[0]["vocab_hash"] and model[0]["vocab_hash"] != corpus_info["vocab_hash"]:
        raise InputError(f"SAE {name!r} reads model {row['model']!r}, whose tokenizer differs from corpus "
                         f"{corpus_info['corpus']!r}'s")
    checkpoint = store.catalog_rows("checkpoints", model=row["model"], step=row["step"])[0]
    lm = model_sources.load_model(model_sources.Checkpoint(int(row["step"]), checkpoint["revision"],
                                                           checkpoint["source"]), torch.float32, device)
    check_against_model(loaded, lm, row["model"])
    return {"sae": loaded.sae, "model": lm, "hook": loaded.hook_name, "hash": loaded.config_hash}


@torch.no_grad()
def _correlate(sides: list[dict], sequences: list[np.ndarray], device, progress: bool) -> CrossCorrelation:
    n_ctx = min(side["model"].config.max_position_embeddings for side in sides)
    sequences = [s[:n_ctx] for s in sequences if len(s)]
    accumulator = CrossCorrelation(sides[0]["sae"].cfg.d_sae, sides[1]["sae"].cfg.d_sae, device)
    batches = plan_batches(np.array([len(s) for s in sequences]), max(TOKEN_BUDGET, n_ctx), min_length=1)
    with tqdm(total=sum(len(s) for s in sequences), unit="tok", unit_scale=True, disable=not progress,
              desc="feature pairs") as bar:
        for batch in batches:
            chosen = [sequences[i] for i in batch]
            feats = [side["sae"].encode(batch_activations(side["model"], chosen, [side["hook"]], device)[side["hook"]]
                                        .float()) for side in sides]
            accumulator.add(*feats)
            bar.update(sum(len(s) for s in chosen))
    return accumulator


def _ingest_feature_matches(store: Store, params: FeatureMatchParams) -> JobResult:
    """Match the features of a pairing (see :func:`quanta_db.results.universality.pairing.match`)."""
    from quanta_db.results.universality.pairing import match

    pairing, method, min_corr, max_many = params.pairing, params.method, params.min_corr, params.max_many
    runs = [p for run_id, p in store.committed_runs("feature_pairs") if run_id == pairing]
    if not runs:
        raise InputError(f"run {pairing!r} is not a committed feature pairing")
    source = runs[0]
    job = Ingest(store, "feature_matches", params.identity(), params.force)
    if job.previous:
        return job.skipped(f"matching {job.previous} has these parameters")
    store.see(job.seen, "feature_pairs", is_input=True, pairing=pairing)
    try:
        corr = store.artifact(pairing, CORRELATION_ARTIFACT)  # float32, memory-mapped
    except InputError:
        raise InputError(f"pairing {pairing} kept no full correlation matrix (more than {MAX_ARTIFACT_ENTRIES:,} "
                         "entries); matching needs it") from None
    dead = [_dead(store, source[side], source["corpus"], n) if params.exclude_dead else None
            for side, n in (("sae_a", corr.shape[0]), ("sae_b", corr.shape[1]))]
    pairs = match(corr, method, min_corr, max_many, dead[0], dead[1])
    if params.token_filter:
        pairs = _token_filter(store, source, pairs)
    with job.begin() as run:
        a, b, c, n = (list(x) for x in zip(*pairs)) if pairs else ([], [], [], [])
        run.write("feature_matches", pa.table({
            "matching": pa.repeat(run.run_id, len(a)), "method": pa.repeat(method, len(a)),
            "sae_a": pa.repeat(source["sae_a"], len(a)), "feature_a": pa.array(a, pa.int32()),
            "sae_b": pa.repeat(source["sae_b"], len(a)), "feature_b": pa.array(b, pa.int32()),
            "corr": pa.array(c, pa.float64()), "n_many": pa.array(n, pa.int32()),
        }))
        written = run.commit()
    mean = float(np.mean(c)) if pairs else float("nan")
    return committed(run, written, f"matching {run.run_id} ({method}): {len(pairs)} pairs, mean corr {mean:.3f}")


def _dead(store: Store, sae: str, corpus: str, n_features: int) -> np.ndarray:
    frame = store.read_fact("sae_features", ["corpus", "feature", "dead"], partition={"sae": sae}).to_pandas()
    frame = frame[frame.corpus == corpus]
    mask = np.zeros(n_features, dtype=bool)
    mask[frame.feature[frame.dead].to_numpy()] = True
    return mask


def _token_filter(store: Store, source: dict, pairs: list) -> list:
    """Keep pairs whose features' top activating tokens share a token that is not only
    punctuation, whitespace or a special token."""
    tops = {side: _top_tokens(store, source[side], source["corpus"]) for side in ("sae_a", "sae_b")}
    kept = []
    for a, b, c, n in pairs:
        shared = tops["sae_a"].get(a, set()) & tops["sae_b"].get(b, set())
        if any(_meaningful(token) for token in shared):
            kept.append((a, b, c, n))
    counts = np.bincount([a for a, *_ in kept], minlength=max([a for a, *_ in kept], default=0) + 1)
    return [(a, b, c, int(counts[a])) for a, b, c, _ in kept]


def _top_tokens(store: Store, sae: str, corpus: str) -> dict[int, set[str]]:
    frame = store.query_df("SELECT feature, token FROM feature_top_tokens(?, ?)", [sae, corpus])
    return frame.groupby("feature").token.agg(set).to_dict()


def _meaningful(token: str) -> bool:
    """Not only whitespace, punctuation or a special token like <|endoftext|>."""
    text = token.strip()
    return bool(text) and not (text.startswith("<|") and text.endswith("|>")) and any(ch.isalnum() for ch in text)


def _ingest_metrics(store: Store, params: MetricParams) -> JobResult:
    """Similarity of the matched decoder vectors of a matching, against both null baselines: over
    all pairs (subject 'all') and, with a ``subspaces`` file (JSON or YAML: category → keywords),
    over the pairs whose A and B features both have a keyword among their top tokens (subject =
    category). The permutation nulls run in batches on ``device``."""
    from quanta_db.results.universality.metrics import permutation_test

    matching, metrics, permutations, seed, subspaces = (params.matching, params.metrics, params.permutations,
                                                        params.seed, params.subspaces)
    pairs = store.read_fact("feature_matches", partition={"matching": matching}).to_pandas()
    if pairs.empty:
        raise InputError(f"matching {matching!r} has no pairs (or does not exist)")
    categories = _read_subspaces(subspaces) if subspaces else {}
    job = Ingest(store, "metrics", params.identity(metrics=list(metrics), subspaces=categories or None), params.force)
    if job.previous:
        return job.skipped(f"metrics run {job.previous} has these parameters")
    store.see(job.seen, "feature_matches", is_input=True, matching=matching)
    torch_device = resolve_device(params.device)
    decoders = [_decoder(store, pairs[column].iloc[0]) for column in ("sae_a", "sae_b")]
    x = decoders[0][pairs.feature_a.to_numpy()]
    y = decoders[1][pairs.feature_b.to_numpy()]
    subjects = {"all": np.ones(len(pairs), dtype=bool)}
    tops = _matched_top_tokens(store, pairs) if categories else {}
    for category, words in categories.items():
        subjects[category] = _in_category(pairs, words, tops)
    rows = []
    for subject, keep in subjects.items():
        if keep.sum() < 3:  # too few pairs for any of the metrics
            continue
        for name in metrics:
            for baseline in BASELINES:
                rows.append({"matching": matching, "subject": subject, "metric": name, **permutation_test(
                    name, x[keep], y[keep], permutations, seed, baseline, *decoders, device=torch_device)})
    with job.begin(device=str(torch_device)) as run:
        run.write("metric_results", pa.Table.from_pylist([{**r, "run_id": run.run_id} for r in rows]))
        written = run.commit()
    summary = ", ".join(f"{r['metric']} {r['value']:.3f} (p {r['p_value']:.3g})" for r in rows
                        if r["baseline"] == "shuffled_pairing" and r["subject"] == "all")
    return committed(run, written, f"metrics {run.run_id} on {len(x)} pairs: {summary}")


ingest_feature_pairs = job_function(FeaturePairParams, _ingest_feature_pairs)
ingest_feature_matches = job_function(FeatureMatchParams, _ingest_feature_matches)
ingest_metrics = job_function(MetricParams, _ingest_metrics)


def _read_subspaces(path: str) -> dict[str, list[str]]:
    from pathlib import Path

    import yaml

    try:
        text = Path(path).read_text()
        # YAML 1.2 reads every JSON document, but JSON first keeps JSON's exact semantics.
        categories = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        raise ParameterError("subspaces", f"{path}: not a readable JSON or YAML file ({error})") from None
    if not isinstance(categories, dict) or not all(isinstance(v, list) for v in categories.values()):
        raise ParameterError("subspaces", f"{path}: expected an object mapping each category to a list of words")
    return {str(k): sorted({str(w).strip().lower() for w in v}) for k, v in sorted(categories.items())}


def _matched_top_tokens(store: Store, pairs) -> dict[str, dict[int, set[str]]]:
    """Per side ('a', 'b') of a matching, each feature's top activating tokens (lower-cased, stripped)
    on the pairing's corpus; read once, shared by every category."""
    corpus = json.loads(store.catalog_rows("runs", run_id=_pairing_of(store, pairs.matching.iloc[0]))[0]["params"])
    return {side: {f: {t.strip().lower() for t in tokens}
                   for f, tokens in _top_tokens(store, pairs[f"sae_{side}"].iloc[0], corpus["corpus"]).items()}
            for side in ("a", "b")}


def _in_category(pairs, words: list[str], tops: dict[str, dict[int, set[str]]]) -> np.ndarray:
    """Pairs whose A feature and B feature each have a keyword among their top activating tokens."""
    wanted = set(words)
    has = {side: {f for f, tokens in tops[side].items() if tokens & wanted} for side in ("a", "b")}
    return np.array([a in has["a"] and b in has["b"] for a, b in zip(pairs.feature_a, pairs.feature_b)])


def _pairing_of(store: Store, matching: str) -> str:
    params = json.loads(store.catalog_rows("runs", run_id=matching)[0]["params"])
    return params["pairing"]


def _decoder(store: Store, sae: str) -> np.ndarray:
    return _registered_sae(store, store.catalog_rows("saes", sae=sae)[0], "cpu").sae.W_dec.detach().double().numpy()


def _registered_sae(store: Store, row: dict, device):
    """The SAE of a ``saes`` row, loaded again; it must still be the one registered under its name."""
    loaded = load_sae(row["source"], row["sae_id"], device, row["sae"], root=store.root)
    if loaded.config_hash != row["config_hash"]:
        raise InputError(f"SAE {row['sae']!r} at {row['source']} is not the SAE the store registered under that "
                         "name (its config or weights changed)")
    return loaded
