"""Views over committed data: one typed view per fact table, plus the saved analyses.

Fact views are built from the catalog's ``files`` list (never a glob), so staged or
half-written files are invisible. Saved analyses are ``queries/<kind>/*.sql`` files with a header::

    -- name: low_loss_tokens
    -- description: Tokens whose loss is below a threshold.
    -- parameters: threshold := 0.1

A file without parameters becomes a view; one with parameters becomes a DuckDB table macro
called as ``SELECT * FROM low_loss_tokens(threshold := 0.05)``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from quanta_db.errors import QueryError, first_line
from quanta_db.store.registry import fact_tables
from quanta_db.store.sql import quote_ident, quote_literal, statement
from quanta_db.store.tables import FactTable, duckdb_type

HEADER_LINE = re.compile(r"^--\s*(name|description|parameters)\s*:\s*(.*)$")


def fact_view_sql(spec: FactTable, paths: list[str]) -> str:
    casts = ", ".join(
        f"CAST({quote_ident(f.name)} AS {duckdb_type(f.type)}) AS {quote_ident(f.name)}" for f in spec.schema
    )
    if not paths:
        nulls = ", ".join(f"CAST(NULL AS {duckdb_type(f.type)}) AS {quote_ident(f.name)}" for f in spec.schema)
        return f"CREATE OR REPLACE VIEW {quote_ident(spec.name)} AS SELECT {nulls} LIMIT 0"
    files = ", ".join(quote_literal(p) for p in paths)
    return (
        f"CREATE OR REPLACE VIEW {quote_ident(spec.name)} AS SELECT {casts} FROM "
        f"read_parquet([{files}], union_by_name = true, hive_partitioning = false)"
    )


def refresh_fact_views(con: duckdb.DuckDBPyConnection, root: Path, tables: list[str] | None = None) -> None:
    """(Re)build the views of ``tables`` (default: all) from the committed-file list.

    Views name absolute paths (``root`` / the store-relative path), so any DuckDB client reads
    them from any working directory; a moved store gets them rebuilt on its next open.
    """
    for name in tables or list(fact_tables()):
        paths = [
            (Path(root) / row[0]).as_posix()
            for row in con.execute(statement("table_files"), [name]).fetchall()
        ]
        con.execute(fact_view_sql(fact_tables()[name], paths))


@dataclass(frozen=True)
class SavedQuery:
    name: str
    description: str
    parameters: str
    body: str
    path: Path

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body.encode()).hexdigest()

    def create_sql(self) -> str:
        if self.parameters:
            return f"CREATE OR REPLACE MACRO {quote_ident(self.name)}({self.parameters}) AS TABLE {self.body}"
        return f"CREATE OR REPLACE VIEW {quote_ident(self.name)} AS {self.body}"


def drop_saved_sql(name: str, is_macro: bool) -> str:
    object_type = "MACRO TABLE" if is_macro else "VIEW"
    return f"DROP {object_type} IF EXISTS {quote_ident(name)}"


def parse_saved_query(path: Path) -> SavedQuery:
    """Read one ``queries/*.sql`` file: header comment lines, then one SELECT."""
    header: dict[str, str] = {}
    body_lines: list[str] = []
    for line in path.read_text().splitlines():
        match = HEADER_LINE.match(line.strip()) if not body_lines else None
        if match:
            header[match.group(1)] = match.group(2).strip()
        elif body_lines or (line.strip() and not line.strip().startswith("--")):
            body_lines.append(line)
    name = header.get("name") or path.stem
    if name != path.stem:
        raise QueryError(f"saved query {path.name} declares name {name!r}; the file must be named {name}.sql")
    if name in fact_tables():
        raise QueryError(f"saved query {name!r} would shadow the fact table of the same name")
    body = "\n".join(body_lines).strip().rstrip(";").strip()
    if not body:
        raise QueryError(f"saved query {path.name} has no SQL after its header")
    return SavedQuery(name, header.get("description", ""), header.get("parameters", ""), body, path)


def discover_saved_queries(directory: Path | None = None) -> list[SavedQuery]:
    """Every ``*.sql`` under ``directory``, recursively, or by default under every result kind's
    saved-analysis folder (its declaration, :mod:`quanta_db.kinds`); names must be unique."""
    from quanta_db.kinds import queries_folders

    folders = [Path(directory)] if directory is not None else queries_folders()
    queries = [parse_saved_query(p) for folder in folders for p in sorted(folder.rglob("*.sql"))]
    seen: dict[str, Path] = {}
    for query in queries:
        if query.name in seen:
            raise QueryError(f"saved query {query.name!r} is defined twice: {seen[query.name]} and {query.path}")
        seen[query.name] = query.path
    return queries


def find_saved_query(con: duckdb.DuckDBPyConnection, name: str) -> dict:
    """The installed saved query ``name`` (name, description, parameters, sql)."""
    result = con.execute(statement("saved_query"), [name])
    row = result.fetchone()
    if row is None:
        raise QueryError(f"unknown saved query {name!r} (see `quanta-db views`)")
    return dict(zip([d[0] for d in result.description], row))


def install_saved_queries(con: duckdb.DuckDBPyConnection, queries: list[SavedQuery]) -> None:
    """Install every saved query and drop those no longer shipped (call inside a transaction).

    Queries may reference one another, so creation is retried in passes until all bind.
    """
    for name, parameters in con.execute(statement("saved_query_parameters")).fetchall():
        con.execute(drop_saved_sql(name, bool(parameters)))
    con.execute(statement("forget_saved_queries"))
    remaining = list(queries)
    while remaining:
        failed: list[tuple[SavedQuery, str]] = []
        for query in remaining:
            try:
                con.execute(query.create_sql())
            except duckdb.Error as error:
                failed.append((query, first_line(error)))
        if len(failed) == len(remaining):
            query, message = failed[0]
            raise QueryError(f"saved query {query.path.name} does not install: {message}")
        remaining = [q for q, _ in failed]
    for query in queries:
        con.execute(
            statement("add_saved_query"),
            [query.name, query.description, query.parameters, query.body, query.sha256],
        )
