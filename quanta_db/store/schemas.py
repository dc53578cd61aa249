"""Declared schemas of the fact tables (Parquet under ``tables/<name>/``).

Each fact table has exactly one declared column list and types; writers cast every batch to
it and the view over the committed files casts again, so a table with no files is still a
typed, queryable view. ``partition_by`` names the coarse Hive partition keys (never a
document or feature id).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from quanta_db.errors import QuantaError


@dataclass(frozen=True)
class FactTable:
    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...]
    description: str


FACT_TABLES: dict[str, FactTable] = {}


def _declare(name: str, fields: list[tuple[str, pa.DataType]], partition_by: tuple[str, ...], description: str) -> None:
    FACT_TABLES[name] = FactTable(name, pa.schema(fields), partition_by, description)


_declare(
    "documents",
    [
        ("corpus", pa.string()),
        ("doc_id", pa.int64()),
        ("subset", pa.string()),
        ("n_tokens", pa.int32()),
        ("text", pa.string()),
        ("source_corpus", pa.string()),
        ("source_doc_id", pa.int64()),
        ("source_start", pa.int32()),
    ],
    ("corpus",),
    "One row per document (doc_id = its 0-based record in the source); sampled contexts name "
    "the corpus, document and token position they were cut from.",
)
_declare(
    "tokens",
    [
        ("corpus", pa.string()),
        ("doc_id", pa.int64()),
        ("pos", pa.int32()),
        ("token_id", pa.int32()),
        ("canonical_idx", pa.int64()),
    ],
    ("corpus",),
    "Tokens of each document (truncated to max_tokens); canonical_idx numbers predictable tokens (pos >= 1).",
)
_declare(
    "vocab",
    [
        ("tokenizer", pa.string()),
        ("token_id", pa.int32()),
        ("token", pa.string()),
    ],
    ("tokenizer",),
    "Each tokenizer's vocabulary: token_id and the decoded text of that single token.",
)

_declare(
    "token_losses",
    [
        ("model", pa.string()),
        ("step", pa.int64()),
        ("corpus", pa.string()),
        ("doc_id", pa.int64()),
        ("pos", pa.int32()),
        ("loss_nats", pa.float32()),
        ("run_id", pa.string()),
    ],
    ("model", "step"),
    "Next-token cross-entropy (nats) of token pos given tokens 0..pos-1 of its document; pos >= 1.",
)
_declare(
    "token_filters",
    [
        ("corpus", pa.string()),
        ("doc_id", pa.int64()),
        ("pos", pa.int32()),
        ("filter", pa.string()),
        ("value", pa.bool_()),
    ],
    ("corpus", "filter"),
    "Boolean token filters: trigram (present trigram) and bigram (induction mask).",
)
_declare(
    "token_alignments",
    [
        ("corpus", pa.string()),
        ("doc_id", pa.int64()),
        ("pos", pa.int32()),
        ("ref_corpus", pa.string()),
        ("ref_doc_id", pa.int64()),
        ("ref_pos", pa.int32()),
    ],
    ("corpus",),
    "Token-for-token links between corpora, e.g. each few-shot DM-math token to its zero-shot twin.",
)

_declare(
    "similarity_tokens",
    [
        ("similarity_run", pa.string()),
        ("idx", pa.int32()),
        ("corpus", pa.string()),
        ("doc_id", pa.int64()),
        ("pos", pa.int32()),
        ("loss_nats", pa.float32()),
    ],
    ("similarity_run",),
    "The tokens of a gradient-similarity matrix: row/column idx of the matrix is this token.",
)
_declare(
    "cluster_labels",
    [
        ("clustering", pa.string()),
        ("corpus", pa.string()),
        ("doc_id", pa.int64()),
        ("pos", pa.int32()),
        ("cluster", pa.int32()),
    ],
    ("clustering",),
    "Cluster (quantum) of each clustered token; cluster 0 is the largest.",
)

ARROW_TO_DUCKDB = {
    pa.string(): "VARCHAR",
    pa.large_string(): "VARCHAR",
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
}


def duckdb_type(arrow_type: pa.DataType) -> str:
    return ARROW_TO_DUCKDB[arrow_type]


def fact_table(name: str) -> FactTable:
    try:
        return FACT_TABLES[name]
    except KeyError:
        raise QuantaError(f"unknown fact table {name!r} (known: {', '.join(sorted(FACT_TABLES))})") from None


def conform(table: pa.Table, spec: FactTable) -> pa.Table:
    """Select and cast ``table`` to the declared schema.

    A missing column is an error unless it is nullable-by-design (every non-key column may be
    absent and is filled with NULL); partition keys must be present.
    """
    missing_keys = [k for k in spec.partition_by if k not in table.column_names]
    if missing_keys:
        raise QuantaError(f"batch for {spec.name} lacks partition column(s) {', '.join(missing_keys)}")
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
        for f in spec.schema
    ]
    return pa.Table.from_arrays(columns, schema=spec.schema)
