"""Replacing an entity drops everything derived from it, transitively, inside one commit.

Tables declare their parents (:class:`~quanta_db.store.tables.Link`). Dropping rows of a
catalog table, or committed files of a fact table, continues into every child table with the
key values of what was dropped: a child catalog table loses its matching rows, a child fact
table the files whose recorded keys match. Fact files are coarse (one partition and per-file
key), so a drop always removes whole groups, and matching a child on the coarse columns it
shares with the link is exact.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field

from quanta_db.store import registry
from quanta_db.store.lake import FACT_SCHEMA
from quanta_db.store.sql import equal_condition, file_key_condition, quote_ident


@dataclass
class Dropped:
    """What a commit removed: rows per table, and committed files to delete once it is durable."""

    rows: Counter = field(default_factory=Counter)
    paths: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        return {table: n for table, n in sorted(self.rows.items()) if n}


def drop(con, table: str, where: dict, dropped: Dropped) -> None:
    """Drop the rows of ``table`` matching ``where`` (column = value) and all their descendants."""
    queue, seen = [(table, where)], set()
    while queue:
        table, where = queue.pop()
        # a filter seen again would drop nothing more: the signature only saves its statements
        signature = (table, json.dumps(where, sort_keys=True, default=str))  # pragma: no mutate
        if signature in seen:
            continue
        seen.add(signature)  # pragma: no mutate  (equivalent: a filter run again finds its rows gone)
        if table in registry.fact_tables():
            removed = _drop_files(con, table, where, dropped)
        else:
            removed = _drop_catalog_rows(con, table, where, dropped)
        for child, mapping in registry.children(table):
            queue += [(child, w) for w in _child_filters(child, mapping, removed)]


def _child_filters(child: str, mapping: dict[str, str], removed: list[dict]) -> list[dict]:
    usable = registry.fact_table(child).file_keys if child in registry.fact_tables() else None
    filters = []
    for row in removed:
        where = {c: row[p] for c, p in mapping.items() if p in row and (usable is None or c in usable)}
        if where and where not in filters:
            filters.append(where)
    return filters


def _drop_catalog_rows(con, table: str, where: dict, dropped: Dropped) -> list[dict]:
    condition, args = equal_condition(where)
    result = con.execute(f"SELECT * FROM {quote_ident(table)} WHERE {condition}", args)
    names = [d[0] for d in result.description]
    rows = [dict(zip(names, r)) for r in result.fetchall()]
    if rows:
        con.execute(f"DELETE FROM {quote_ident(table)} WHERE {condition}", args)
        dropped.rows[table] += len(rows)
    return rows


def _drop_files(con, table: str, where: dict, dropped: Dropped) -> list[dict]:
    condition, args = file_key_condition(where)
    found = con.execute(f"SELECT path, keys, rows FROM files WHERE table_name = ? AND {condition}",
                        [table, *args]).fetchall()
    if not found:
        return []
    con.execute(f"DELETE FROM files WHERE table_name = ? AND {condition}", [table, *args])
    # Every row of the lake table matching the per-file keys lives in one of these files.
    rows_condition, rows_args = equal_condition(where)
    con.execute(f"DELETE FROM {FACT_SCHEMA}.{quote_ident(table)} WHERE {rows_condition}", rows_args)
    dropped.rows[table] += sum(rows for _, _, rows in found)
    dropped.paths += [path for path, _, _ in found]
    keys = []
    for _, text, _ in found:
        value = json.loads(text) if text else {}
        if value not in keys:
            keys.append(value)
    return keys


def unlist_files(con, where: str, args: list, dropped: Dropped) -> None:
    """Delete matching rows of ``files`` (no cascade); their paths go to ``dropped``."""
    paths = [path for (path,) in con.execute(f"SELECT path FROM files WHERE {where}", args).fetchall()]
    con.execute(f"DELETE FROM files WHERE {where}", args)
    dropped.paths += paths
