"""Tables of the heads kind: per-token head metrics and per-head scores of a model checkpoint."""

import pyarrow as pa

from quanta_db.store.tables import FactTable, Link

CHECKPOINT = Link("checkpoints", ("model", "step"))

CATALOG_TABLES: list = []

FACT_TABLES = [
    FactTable(
        "head_token_metrics",
        [("model", pa.string()), ("step", pa.int64()), ("corpus", pa.string()), ("doc_id", pa.int64()),
         ("pos", pa.int32()), ("layer", pa.int16()), ("head", pa.int16()), ("dla", pa.float32()),
         ("mover_attn", pa.float32()), ("mover_dla", pa.float32())],
        ("model", "step"),
        "Per predictable token (pos >= 1, predicted at pos - 1) and head: direct logit attribution to the actual "
        "token (TransformerLens processed weights, frozen final LayerNorm scale), attention on earlier copies of "
        "that token, and the DLA of only that attention.",
        split_by=("corpus",),
        parents=(CHECKPOINT, Link("tokens", ("corpus", "doc_id", "pos"))),
    ),
    FactTable(
        "head_scores",
        [("model", pa.string()), ("step", pa.int64()), ("layer", pa.int16()), ("head", pa.int16()),
         ("induction", pa.float64()), ("previous_token", pa.float64()), ("duplicate_token", pa.float64()),
         ("ov_copy_resid", pa.float64()), ("ov_copy_vocab", pa.float64()), ("frac_copy_argmax", pa.float64())],
        ("model", "step"),
        "Per head: induction, previous-token and duplicate-token attention scores on repeated random tokens, "
        "and OV-circuit copying (eigenvalue ratio in the residual and vocabulary bases, fraction of tokens "
        "whose top output is themselves).",
        parents=(CHECKPOINT,),
    ),
]
