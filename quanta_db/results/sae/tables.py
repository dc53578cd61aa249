"""Tables of the sae kind.

An SAE is registered under a name (``saes.sae``) with the model checkpoint and hook it reads.
Per corpus, ``ingest sae`` stores each feature's statistics, its top and activation-band
examples (linked to tokens), the SAE's metrics with the raw sums they come from, and, per SAE,
each feature's logit effects through the model's unembedding.
"""

import pyarrow as pa

from quanta_db.store.tables import CatalogTable, FactTable, Link

TOKEN_KEY = ("corpus", "doc_id", "pos")
SAE_KEY = Link("saes", ("sae",))

CATALOG_TABLES = [
    CatalogTable("saes", ("sae",), "Sparse autoencoders: model checkpoint and hook they read, sizes, architecture, "
                 "source, sae-lens version and config.", parents=(Link("checkpoints", ("model", "step")),)),
]

FACT_TABLES = [
    FactTable(
        "sae_features",
        [("sae", pa.string()), ("corpus", pa.string()), ("feature", pa.int32()), ("n_tokens", pa.int64()),
         ("n_active", pa.int64()), ("density", pa.float64()), ("mean_act", pa.float64()),
         ("mean_act_active", pa.float64()), ("max_act", pa.float32()), ("dead", pa.bool_()),
         ("encoder_norm", pa.float32()), ("decoder_norm", pa.float32()), ("max_decoder_cos", pa.float32()),
         ("enc_dec_cos", pa.float32())],
        ("sae",),
        "Per feature of an SAE on a corpus: activity (density = active tokens / n_tokens), activation "
        "statistics, dead (never active on these n_tokens) and weight geometry.",
        split_by=("corpus",), parents=(SAE_KEY, Link("corpora", ("corpus",))),
    ),
    FactTable(
        "feature_examples",
        [("sae", pa.string()), ("corpus", pa.string()), ("feature", pa.int32()), ("kind", pa.string()),
         ("rank", pa.int32()), ("doc_id", pa.int64()), ("pos", pa.int32()), ("activation", pa.float32())],
        ("sae",),
        "Tokens that activate a feature: kind 'top' (rank 0 = highest over the corpus) or 'band_B' (random "
        "tokens whose activation lies in the B-th of 10 equal-width bands of (0, max_act]).",
        split_by=("corpus",), parents=(SAE_KEY, Link("tokens", TOKEN_KEY)),
    ),
    FactTable(
        "feature_histograms",
        [("sae", pa.string()), ("corpus", pa.string()), ("feature", pa.int32()), ("bin", pa.int32()),
         ("lower", pa.float64()), ("upper", pa.float64()), ("count", pa.int64())],
        ("sae",),
        "Exact histogram of each feature's nonzero |activation| on 32 log-spaced bins from 1e-4 to 1e4 "
        "(values beyond the ends counted in the first or last bin); empty bins are left out.",
        split_by=("corpus",), parents=(SAE_KEY, Link("corpora", ("corpus",))),
    ),
    FactTable(
        "feature_logits",
        [("sae", pa.string()), ("feature", pa.int32()), ("direction", pa.string()), ("rank", pa.int32()),
         ("token_id", pa.int32()), ("value", pa.float32())],
        ("sae",),
        "Logit effects: the tokens whose unembedding the feature's decoder direction raises ('top') or "
        "lowers ('bottom') most, value = (W_dec · W_U)[feature, token].",
        parents=(SAE_KEY,),
    ),
    FactTable(
        "sae_metrics",
        [("sae", pa.string()), ("corpus", pa.string()), ("n_tokens", pa.int64()), ("l0", pa.float64()),
         ("l1", pa.float64()), ("mse", pa.float64()), ("explained_variance", pa.float64()),
         ("explained_variance_legacy", pa.float64()), ("cos_sim", pa.float64()), ("l2_ratio", pa.float64()),
         ("dead_fraction", pa.float64()), ("alive_fraction", pa.float64()), ("density_mean", pa.float64()),
         ("gini", pa.float64()), ("freq_over_1pct", pa.float64()), ("freq_over_10pct", pa.float64()),
         ("dec_cos_mean", pa.float64()), ("dec_cos_p95", pa.float64()), ("dec_cos_max", pa.float64()),
         ("ce_loss_clean", pa.float64()), ("ce_loss_sae", pa.float64()), ("ce_loss_zero", pa.float64()),
         ("ce_loss_score", pa.float64()), ("metric_version", pa.string()),
         ("sum_x", pa.list_(pa.float64())), ("sum_sq_norm", pa.float64()), ("sum_sq_residual", pa.float64()),
         ("sum_l0", pa.float64()), ("sum_l1", pa.float64())],
        ("sae",),
        "One row per SAE and corpus: sae-lens 6.54 evals definitions (l0, mse, explained variance, CE loss "
        "score, ...), feature-frequency summaries, decoder-pair cosines, and the float64 sums they derive from.",
        split_by=("corpus",), parents=(SAE_KEY, Link("corpora", ("corpus",))),
    ),
]
