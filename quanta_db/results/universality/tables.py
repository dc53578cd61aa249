"""Tables of the universality kind.

A pairing (the run that correlated the features of two SAEs over the same tokens) keeps each
feature's best partners on the other side; a matching (a run over a pairing) keeps one partner
per feature by a method; metric results compare the matched decoder spaces against null
baselines.
"""

import pyarrow as pa

from quanta_db.store.tables import FactTable, Link

SAES = (Link("saes", {"sae_a": "sae"}), Link("saes", {"sae_b": "sae"}))

CATALOG_TABLES: list = []

FACT_TABLES = [
    FactTable(
        "feature_pairs",
        [("pairing", pa.string()), ("sae_a", pa.string()), ("feature_a", pa.int32()), ("sae_b", pa.string()),
         ("feature_b", pa.int32()), ("corr", pa.float64()), ("rank", pa.int32()), ("side", pa.string())],
        ("pairing",),
        "Pearson correlation of SAE A and SAE B features over the same tokens: each B feature's top-k A "
        "features (side 'b': rank among B's partners) and each A feature's top-k B features (side 'a'); "
        "rank 0 = best. Features without variance have no partners.",
        parents=SAES,
    ),
    FactTable(
        "feature_matches",
        [("matching", pa.string()), ("method", pa.string()), ("sae_a", pa.string()), ("feature_a", pa.int32()),
         ("sae_b", pa.string()), ("feature_b", pa.int32()), ("corr", pa.float64()), ("n_many", pa.int32())],
        ("matching",),
        "Matched feature pairs of a pairing by method (argmax, one-to-one, greedy); n_many = B features "
        "matched to the same A feature.",
        parents=SAES,
    ),
    FactTable(
        "metric_results",
        [("run_id", pa.string()), ("matching", pa.string()), ("subject", pa.string()), ("metric", pa.string()),
         ("value", pa.float64()), ("null_mean", pa.float64()), ("null_std", pa.float64()), ("p_value", pa.float64()),
         ("n_pairs", pa.int32()), ("n_permutations", pa.int32()), ("baseline", pa.string())],
        ("matching",),
        "Similarity of matched decoder spaces (svcca, rsa, cka, procrustes, mknn) for all pairs or a semantic "
        "subject, with the null mean/std and permutation p-value of a baseline.",
        parents=(Link("feature_matches", ("matching",)),),
    ),
]
