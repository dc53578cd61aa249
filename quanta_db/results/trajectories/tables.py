"""Tables of the trajectories kind.

A fit (the run of ``ingest trajectories``) decomposes the (model, step) × token loss matrix:
its components with their explained variance, every row's scores (raw and smoothed), the
nonzero loadings of every token, and the essential-dynamics events of the smoothed score curves.
Components are numbered from 1 (PC1).
"""

import pyarrow as pa

from quanta_db.store.tables import CatalogTable, FactTable, Link

FIT = Link("trajectory_fits", ("fit",))

CATALOG_TABLES = [
    CatalogTable("trajectory_fits", ("fit",), "Loss-trajectory fits: corpus, models, method, matrix size, "
                 "dropped tokens, sparse PCA settings, smoothing.", parents=(Link("corpora", ("corpus",)),)),
]

FACT_TABLES = [
    FactTable(
        "trajectory_components",
        [("fit", pa.string()), ("component", pa.int32()), ("method", pa.string()),
         ("explained_variance", pa.float64()), ("explained_variance_ratio", pa.float64()), ("sparsity", pa.float64())],
        ("fit",),
        "Components of a fit (1 = PC1): method (pca or sparse), variance of its scores and that over the "
        "matrix's total variance, fraction of zero loadings.",
        parents=(FIT,),
    ),
    FactTable(
        "trajectory_scores",
        [("fit", pa.string()), ("model", pa.string()), ("step", pa.int64()), ("component", pa.int32()),
         ("score", pa.float64()), ("score_smoothed", pa.float64())],
        ("fit",),
        "Score of each (model, step) row on each component, and along each model's checkpoints smoothed "
        "with the fit's Gaussian.",
        parents=(FIT, Link("checkpoints", ("model", "step"))),
    ),
    FactTable(
        "trajectory_loadings",
        [("fit", pa.string()), ("component", pa.int32()), ("corpus", pa.string()), ("doc_id", pa.int64()),
         ("pos", pa.int32()), ("loading", pa.float32())],
        ("fit",),
        "Nonzero loading of each token (a matrix column) on each component.",
        parents=(FIT, Link("tokens", ("corpus", "doc_id", "pos"))),
    ),
    FactTable(
        "trajectory_events",
        [("fit", pa.string()), ("model", pa.string()), ("step", pa.int64()), ("pc_x", pa.int32()),
         ("pc_y", pa.int32()), ("kind", pa.string()), ("value", pa.float64())],
        ("fit",),
        "Essential-dynamics events of a model's smoothed curve in the plane of components pc_x, pc_y: "
        "curvature_max (value: curvature) and cusp (value: speed of the evolute).",
        parents=(FIT, Link("checkpoints", ("model", "step"))),
    ),
]
