"""Tables of the geometry kind: what the activation space at a hook looks like, per model
checkpoint and corpus (definitions: :mod:`quanta_db.results.geometry.moments`)."""

import pyarrow as pa

from quanta_db.store.tables import FactTable, Link

HOOK_KEY = [("model", pa.string()), ("step", pa.int64()), ("corpus", pa.string()), ("hook", pa.string())]
PARENTS = (Link("checkpoints", ("model", "step")), Link("corpora", ("corpus",)))

CATALOG_TABLES: list = []

FACT_TABLES = [
    FactTable(
        "activation_dimensions",
        HOOK_KEY + [("dim", pa.int32()), ("mean", pa.float64()), ("std", pa.float64()),
                    ("mean_square", pa.float64()), ("kurtosis", pa.float64()), ("max_abs", pa.float64()),
                    ("energy_fraction", pa.float64())],
        ("model", "step"),
        "Per dimension of a hook's activations over a corpus (float64, population): mean, std, mean of squares, "
        "excess kurtosis (NULL for a constant dimension), max |activation|, and energy_fraction = its mean square "
        "over the sum of all dimensions' mean squares.",
        split_by=("corpus", "hook"), parents=PARENTS,
    ),
    FactTable(
        "activation_summary",
        HOOK_KEY + [("layer", pa.int32()), ("n_tokens", pa.int64()), ("d", pa.int32()),
                    ("total_variance", pa.float64()), ("participation_ratio", pa.float64()),
                    ("variance_top1", pa.float64()), ("variance_top10", pa.float64()),
                    ("variance_top100", pa.float64()), ("mean_pair_cosine", pa.float64())],
        ("model", "step"),
        "Isotropy of a hook's activations: participation ratio (Σλ)²/Σλ² of the covariance spectrum, fraction of "
        "variance in the top 1/10/100 principal directions, and the mean cosine over all pairs of distinct tokens.",
        split_by=("corpus", "hook"), parents=PARENTS,
    ),
    FactTable(
        "activation_spectrum",
        HOOK_KEY + [("rank", pa.int32()), ("eigenvalue", pa.float64()), ("variance_fraction", pa.float64()),
                    ("cumulative_fraction", pa.float64())],
        ("model", "step"),
        "Eigenvalues of the (population) covariance of a hook's activations, rank 0 largest, with each one's "
        "fraction of the total variance and the cumulative fraction.",
        split_by=("corpus", "hook"), parents=PARENTS,
    ),
    FactTable(
        "activation_top_tokens",
        HOOK_KEY + [("dim", pa.int32()), ("rank", pa.int32()), ("doc_id", pa.int64()), ("pos", pa.int32()),
                    ("activation", pa.float32())],
        ("model", "step"),
        "Per dimension the tokens of largest |activation| (rank 0 largest; ties: the earlier token), with the "
        "signed activation.",
        split_by=("corpus", "hook"), parents=PARENTS + (Link("tokens", ("corpus", "doc_id", "pos")),),
    ),
]
