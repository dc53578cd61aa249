"""Tables of the filters kind."""

import pyarrow as pa

from quanta_db.store.tables import FactTable, Link

FACT_TABLES = [
    FactTable(
        "token_filters",
        [("corpus", pa.string()), ("doc_id", pa.int64()), ("pos", pa.int32()), ("filter", pa.string()),
         ("value", pa.bool_())],
        ("corpus", "filter"),
        "Boolean token filters: trigram (present trigram) and bigram (induction mask).",
        parents=(Link("tokens", ("corpus", "doc_id", "pos")),),
    ),
]
