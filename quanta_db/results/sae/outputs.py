"""What ``ingest sae`` stages: the catalog rows, and the tables built from its statistics."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import torch

from quanta_db.results.losses.models import stage_model_rows
from quanta_db.results.sae.loading import LoadedSAE
from quanta_db.results.sae.stats import HISTOGRAM_EDGES, FeatureStatistics, decoder_geometry, gini

LOGIT_EFFECTS = 10  # top and bottom tokens per feature
FEATURE_BLOCK = 4096


def stage_catalog(run, loaded: LoadedSAE, model_name: str, checkpoint, lm, corpus_info: dict, layer: int,
                  registered: str, known_model: bool, logits: pa.Table | None) -> None:
    """The ``saes`` row and the SAE's logit effects (registered once per name), and the model's
    rows if the store lacks them."""
    import sae_lens

    if not known_model:
        stage_model_rows(run, model_name, checkpoint, lm, corpus_info)
    row = {"sae": loaded.name, "model": model_name, "step": checkpoint.step, "hook_name": loaded.hook_name,
           "layer": layer, "d_in": loaded.sae.cfg.d_in, "d_sae": loaded.sae.cfg.d_sae,
           "architecture": loaded.architecture, "source": loaded.source, "sae_id": loaded.sae_id,
           "sae_lens_version": sae_lens.__version__, "config": json.dumps(loaded.config, sort_keys=True, default=str),
           "config_hash": loaded.config_hash, "run_id": run.run_id}
    if registered == "replace":
        run.replace("saes", sae=loaded.name)
        run.upsert("saes", [row], key=["sae"])
        run.write("feature_logits", logits)
    elif registered == "new":
        run.register("saes", row, key=["sae"], same=["config_hash"], facts={"feature_logits": logits})


@torch.no_grad()
def feature_logits(loaded: LoadedSAE, lm) -> pa.Table:
    """Top and bottom ``LOGIT_EFFECTS`` tokens of W_dec · W_Uᵀ per feature, in feature blocks."""
    w_dec = loaded.sae.W_dec.float()
    w_u = lm.get_output_embeddings().weight.float().to(w_dec.device)
    features, directions, ranks, tokens, values = [], [], [], [], []
    k = min(LOGIT_EFFECTS, w_u.shape[0])
    for start in range(0, w_dec.shape[0], FEATURE_BLOCK):
        effects = w_dec[start:start + FEATURE_BLOCK] @ w_u.T
        for direction, (value, token) in (("top", effects.topk(k, dim=1)),
                                          ("bottom", effects.topk(k, dim=1, largest=False))):
            n = value.shape[0]
            features.append(np.repeat(np.arange(start, start + n, dtype=np.int32), k))
            directions += [direction] * (n * k)
            ranks.append(np.tile(np.arange(k, dtype=np.int32), n))
            tokens.append(token.cpu().numpy().astype(np.int32).ravel())
            values.append(value.cpu().numpy().astype(np.float32).ravel())
    n_rows = sum(len(f) for f in features)
    return pa.table({"sae": pa.repeat(loaded.name, n_rows), "feature": np.concatenate(features),
                     "direction": pa.array(directions, pa.string()), "rank": np.concatenate(ranks),
                     "token_id": np.concatenate(tokens), "value": np.concatenate(values)})


def stage_statistics(run, loaded: LoadedSAE, corpus: str, stats: FeatureStatistics, ce: dict, doc_ids: np.ndarray,
                     starts: np.ndarray) -> dict:
    """Stage sae_features, feature_examples and sae_metrics; returns a summary. ``starts``: the
    global token index of each document's first token (how the statistics index tokens)."""
    columns = stats.feature_columns()
    geometry = decoder_geometry(loaded.sae.W_enc, loaded.sae.W_dec)
    d_sae = len(columns["n_active"])
    run.write("sae_features", pa.table({
        "sae": pa.repeat(loaded.name, d_sae), "corpus": pa.repeat(corpus, d_sae),
        "feature": np.arange(d_sae, dtype=np.int32), **columns,
        **{k: geometry[k] for k in ("encoder_norm", "decoder_norm", "max_decoder_cos", "enc_dec_cos")},
    }))
    run.write("feature_examples", _examples(loaded.name, corpus, stats, doc_ids, starts))
    feature, bin_index, count = stats.histograms()
    run.write("feature_histograms", pa.table({
        "sae": pa.repeat(loaded.name, len(feature)), "corpus": pa.repeat(corpus, len(feature)),
        "feature": feature.astype(np.int32), "bin": bin_index.astype(np.int32),
        "lower": HISTOGRAM_EDGES[bin_index], "upper": HISTOGRAM_EDGES[bin_index + 1], "count": count,
    }))
    metrics = metrics_row(loaded.name, corpus, stats, ce, columns["density"], geometry)
    run.write("sae_metrics", pa.Table.from_pylist([metrics]))
    return {"n_tokens": metrics["n_tokens"], "n_dead": int(columns["dead"].sum()), "l0": metrics["l0"],
            "explained_variance": metrics["explained_variance"], "ce_loss_score": metrics["ce_loss_score"]}


def _examples(sae: str, corpus: str, stats: FeatureStatistics, doc_ids: np.ndarray, starts: np.ndarray) -> pa.Table:
    values, tokens = stats.top_examples()
    feature, rank = np.nonzero(tokens >= 0)
    bands = stats.band_example_arrays()
    kinds = pa.concat_arrays([pa.array(np.full(len(feature), "top")),
                              pa.array(np.char.add("band_", bands["band"].astype(str)), pa.string())])
    index = np.r_[tokens[feature, rank], bands["token"]]
    activation = np.r_[values[feature, rank], bands["value"]]
    feature, rank = np.r_[feature, bands["feature"]], np.r_[rank, bands["rank"]]
    doc = np.searchsorted(starts, index, side="right") - 1
    n = len(feature)
    return pa.table({
        "sae": pa.repeat(sae, n), "corpus": pa.repeat(corpus, n), "feature": feature.astype(np.int32),
        "kind": kinds.cast(pa.string()), "rank": rank.astype(np.int32), "doc_id": doc_ids[doc].astype(np.int64),
        "pos": (index - starts[doc]).astype(np.int32), "activation": activation.astype(np.float32),
    })


def metrics_row(sae: str, corpus: str, stats: FeatureStatistics, ce: dict, densities: np.ndarray,
                geometry: dict) -> dict:
    """The ``sae_metrics`` row (definitions: :mod:`quanta_db.results.sae.stats`); CE loss score =
    (CE_zero − CE_sae) / (CE_zero − CE_clean)."""
    sums = stats.metric_sums()
    n_ce = max(ce["n"], 1)
    clean, spliced, zero = (ce[k] / n_ce if ce["n"] else None for k in ("clean", "sae", "zero"))
    score = (zero - spliced) / (zero - clean) if ce["n"] and zero != clean else None
    return {
        "sae": sae, "corpus": corpus, "n_tokens": sums.n_tokens, **sums.metrics(),
        "dead_fraction": float(np.mean(densities == 0)), "alive_fraction": float(np.mean(densities > 0)),
        "density_mean": float(densities.mean()), "gini": gini(densities),
        "freq_over_1pct": float(np.mean(densities > 0.01)), "freq_over_10pct": float(np.mean(densities > 0.1)),
        "dec_cos_mean": geometry["dec_cos_mean"], "dec_cos_p95": geometry["dec_cos_p95"],
        "dec_cos_max": geometry["dec_cos_max"], "ce_loss_clean": clean, "ce_loss_sae": spliced,
        "ce_loss_zero": zero, "ce_loss_score": score, "metric_version": "sae-lens-6.54/1",
        "sum_x": sums.sum_x.tolist() if sums.sum_x is not None else None, "sum_sq_norm": sums.sum_sq_norm,
        "sum_sq_residual": sums.sum_sq_residual, "sum_l0": sums.sum_l0, "sum_l1": sums.sum_l1,
    }
