"""A statement that reads one partition of one fact table, run over that partition's files
directly rather than through the lake's scan.

Why: DuckLake's scan of a table starts by fetching the table's file list and, for each column a
query filters on, every file's statistics from the catalog, and prunes them in DuckDB. On a
PostgreSQL catalog at 25,000 files that is 130–200 ms of a point query whose data takes 5 ms to
read, and it grows with the table's file count, not with what the query reads. The store already
knows which files a statement can read (:mod:`quanta_db.store.reach`, from the keys each committed
file records), so such a statement runs with a common table expression of the table's name over
``read_parquet`` of exactly those files, each declared column cast to its declared type::

    WITH "token_losses" AS (SELECT CAST("model" AS VARCHAR) AS "model", ...
                            FROM read_parquet([...], union_by_name = true, hive_partitioning = false))
    SELECT avg(loss_nats) FROM token_losses WHERE model = 'x' AND step = 1000 AND corpus = 'c'

This gives what the lake's view gives over the same table, because:

- only statements that are one plain scan of one fact table named without schema or catalog
  (:func:`quanta_db.store.reach.one_scan_plan`) run this way, and only when the statement with
  the expression in front parses to the same statement (the same tree, less the expression):
  the name then means the expression and nothing else is read;
- the files a statement reaches are every committed file its filters can be true for (the
  lake's own pruning by statistics is no wider: a file holds one value of each key), and the
  catalog's ``files`` and the lake's registered files change in the same transaction;
- nothing of a fact table is inlined in the catalog (``lake_fact_options.sql``) and a table
  with a delete file is read through the lake;
- a file without a column the table declares gives NULL for it, as the lake does; when no
  file read has it, binding fails and the statement runs through the lake (:mod:`querying`).

A statement that reaches more than :data:`MAX_FILES` files runs through the lake, whose
statistics then save reading each file's footer.
"""

from __future__ import annotations

from quanta_db.store import reach, sandbox
from quanta_db.store.registry import fact_tables
from quanta_db.store.sql import quote_ident
from quanta_db.store.tables import duckdb_type

MAX_FILES = 64
PLACEHOLDER = "SELECT 1"  # what stands for the expression when checking that a statement keeps its meaning


def statement(sql: str, scan: reach.ScanPlan, paths: frozenset[str], deleted: frozenset[str]) -> str | None:
    """``sql`` reading ``scan``'s table from ``paths`` (absolute) directly, or None when it must
    run through the lake: ``scan`` is not :attr:`~quanta_db.store.reach.ScanPlan.direct`, the
    table has delete files (``deleted``: the tables that do) or more than :data:`MAX_FILES` files are reached."""
    if not scan.direct or scan.table in deleted or len(paths) > MAX_FILES:
        return None
    return f"WITH {quote_ident(scan.table)} AS ({_select(scan.table, sorted(paths))}) {sql}"


def keeps_meaning(sql: str, table: str, tree: dict) -> bool:
    """Whether ``sql`` (serialised: ``tree``) with an expression named ``table`` in front is the
    same statement with that expression: the same serialised tree, less the expression and the
    text's offsets."""
    before = tree
    after = sandbox.serialised(f"WITH {quote_ident(table)} AS ({PLACEHOLDER}) {sql}")
    # a text that does not parse serialises to an error with no statements (so does the first,
    # whose error tree then equals no statement's)
    if len(after.get("statements") or []) != 1:
        return False
    node = after["statements"][0].get("node") or {}
    entries = (node.get("cte_map") or {}).get("map") or []
    # (a text making more expressions, or another, does not parse by itself: the trees differ too)
    if len(entries) != 1 or str(entries[0].get("key")) != table:  # pragma: no mutate
        return False
    node["cte_map"]["map"] = []
    return _located(before) == _located(after)


def _located(tree):
    """``tree`` without the offsets of its parts in the statement's text."""
    if isinstance(tree, dict):
        return {key: _located(value) for key, value in tree.items() if key != "query_location"}
    if isinstance(tree, list):
        return [_located(item) for item in tree]
    return tree


def _select(table: str, paths: list[str]) -> str:
    """The rows of ``table``'s files ``paths`` with its declared columns and types."""
    fields = fact_tables()[table].schema
    if not paths:
        nulls = ", ".join(f"CAST(NULL AS {duckdb_type(f.type)}) AS {quote_ident(f.name)}" for f in fields)
        return f"SELECT {nulls} WHERE false"
    columns = ", ".join(f"CAST({quote_ident(f.name)} AS {duckdb_type(f.type)}) AS {quote_ident(f.name)}"
                        for f in fields)
    listed = ", ".join(_literal(path) for path in paths)
    return f"SELECT {columns} FROM read_parquet([{listed}], union_by_name = true, hive_partitioning = false)"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
