"""Tables of the quanta kind.

A clustering is identified by the run that made it. A similarity run computed a gradient
cosine matrix (an artifact) over the tokens in ``similarity_tokens``; later clusterings may
recluster that matrix, so several clusterings can share one similarity run.
"""

import pyarrow as pa

from quanta_db.store.tables import CatalogTable, FactTable, Link

TOKEN_KEY = ("corpus", "doc_id", "pos")

CATALOG_TABLES = [
    CatalogTable(
        "clusterings", ("clustering",),
        "Clusterings of tokens by gradient similarity: model, step, corpus, similarity run and method, sizes, timings.",
        parents=(Link("corpora", ("corpus",)), Link("checkpoints", ("model", "step")),
                 Link("token_losses", ("model", "step", "corpus"))),
    ),
]

FACT_TABLES = [
    FactTable(
        "similarity_tokens",
        [("similarity_run", pa.string()), ("idx", pa.int32()), ("corpus", pa.string()), ("doc_id", pa.int64()),
         ("pos", pa.int32()), ("loss_nats", pa.float32())],
        ("similarity_run",),
        "The tokens of a gradient-similarity matrix: row/column idx of the matrix is this token.",
        split_by=("corpus",),
        parents=(Link("clusterings", ("similarity_run",)), Link("tokens", TOKEN_KEY)),
    ),
    FactTable(
        "cluster_labels",
        [("clustering", pa.string()), ("corpus", pa.string()), ("doc_id", pa.int64()), ("pos", pa.int32()),
         ("cluster", pa.int32())],
        ("clustering",),
        "Cluster (quantum) of each clustered token; cluster 0 is the largest.",
        split_by=("corpus",),
        parents=(Link("clusterings", ("clustering",)), Link("tokens", TOKEN_KEY)),
    ),
]
