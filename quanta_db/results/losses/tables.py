"""Tables of the losses kind."""

import pyarrow as pa

from quanta_db.store.tables import CatalogTable, FactTable, Link

CATALOG_TABLES = [
    CatalogTable("models", ("model",), "Models by name: source, architecture, size and shape, vocabulary hash."),
    CatalogTable("checkpoints", ("model", "step"), "Training checkpoints of each model: step, hub revision, source.",
                 parents=(Link("models", ("model",)),)),
]

FACT_TABLES = [
    FactTable(
        "token_losses",
        [("model", pa.string()), ("step", pa.int64()), ("corpus", pa.string()), ("doc_id", pa.int64()),
         ("pos", pa.int32()), ("loss_nats", pa.float32()), ("run_id", pa.string())],
        ("model", "step"),
        "Next-token cross-entropy (nats) of token pos given tokens 0..pos-1 of its document; pos >= 1.",
        split_by=("corpus",),
        parents=(Link("checkpoints", ("model", "step")), Link("tokens", ("corpus", "doc_id", "pos"))),
    ),
]
