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
    ],
    ("corpus",),
    "One row per document of a corpus (doc_id = its 0-based line/row in the source).",
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
    """Select and cast ``table`` to the declared schema; a missing column is an error."""
    missing = [f.name for f in spec.schema if f.name not in table.column_names]
    if missing:
        raise QuantaError(f"batch for {spec.name} lacks column(s) {', '.join(missing)}")
    return table.select(spec.schema.names).cast(spec.schema)
