"""How a result kind declares its tables: columns and types, partitioning, and parents.

A fact table (Parquet under ``tables/<name>/``) has exactly one declared column list and
types; writers cast every batch to it and the view over the committed files casts again, so a
table with no files is still a typed, queryable view. ``partition_by`` names the coarse Hive
partition keys (never a document or feature id); ``split_by`` names further coarse columns that
are constant within each file (one file per value), recorded with the file in the catalog so a
replacement can find the files that hold a key without reading them.

A catalog table (a small DuckDB table created by a migration) declares its key columns.

Both declare their parents with :class:`Link`: the rows of a table are derived from the parent
rows with equal key values. Replacing a parent (``--force``) drops every row derived from it,
transitively, in the same commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from quanta_db.errors import QuantaError


@dataclass(frozen=True)
class Link:
    """This table's rows derive from ``parent`` rows where ``columns`` match.

    ``columns`` maps this table's column to the parent's (a plain tuple means the same names).
    """

    parent: str
    columns: tuple[str, ...] | dict[str, str]

    @property
    def mapping(self) -> dict[str, str]:
        return dict(self.columns) if isinstance(self.columns, dict) else {c: c for c in self.columns}


@dataclass(frozen=True)
class FactTable:
    name: str
    columns: list[tuple[str, pa.DataType]]
    partition_by: tuple[str, ...]
    description: str
    split_by: tuple[str, ...] = ()
    parents: tuple[Link, ...] = ()

    @property
    def schema(self) -> pa.Schema:
        return pa.schema(self.columns)

    @property
    def file_keys(self) -> tuple[str, ...]:
        """Columns constant within each committed file (recorded in ``files.keys``)."""
        return self.partition_by + tuple(c for c in self.split_by if c not in self.partition_by)


@dataclass(frozen=True)
class CatalogTable:
    name: str
    key: tuple[str, ...]
    description: str
    parents: tuple[Link, ...] = field(default=())


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
    if pa.types.is_list(arrow_type):
        return f"{duckdb_type(arrow_type.value_type)}[]"
    return ARROW_TO_DUCKDB[arrow_type]


def conform(table: pa.Table, spec: FactTable) -> pa.Table:
    """Select and cast ``table`` to the declared schema.

    A missing column is filled with NULL; the per-file key columns must be present and not NULL.
    """
    missing_keys = [k for k in spec.file_keys if k not in table.column_names]
    if missing_keys:
        raise QuantaError(f"batch for {spec.name} lacks key column(s) {', '.join(missing_keys)}")
    # a file holds one value of each key, read from its rows at commit: a NULL key has no file
    null_keys = [k for k in spec.file_keys if table.column(k).null_count]
    if null_keys:
        raise QuantaError(f"batch for {spec.name} has NULL in key column(s) {', '.join(null_keys)}")
    schema = spec.schema
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows)  # typed by the schema
        for f in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)
