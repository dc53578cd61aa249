"""The store's entity diagram (Mermaid), derived from the table declarations and migrations."""

from __future__ import annotations

import duckdb

from quanta_db.store import migrations, registry
from quanta_db.store.tables import duckdb_type

# Bookkeeping tables shown with their links to what they record.
BOOKKEEPING = ('    runs ||--o{ files : "run_id"',)


def catalog_columns() -> dict[str, list[tuple[str, str]]]:
    """Columns and types of every catalog table, from the migrations applied to a scratch database."""
    con = duckdb.connect()
    try:
        migrations.apply(con, migrations.discover())
        rows = con.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                           "ORDER BY table_name, ordinal_position").fetchall()
    finally:
        con.close()
    columns: dict[str, list[tuple[str, str]]] = {}
    for table, column, dtype in rows:
        columns.setdefault(table, []).append((column, dtype.lower()))
    return columns


def entity_diagram() -> str:
    """``erDiagram`` with one relation per declared parent link and every table's columns."""
    facts, catalog = registry.fact_tables(), registry.catalog_tables()
    lines = ["erDiagram", *BOOKKEEPING]
    for spec in [*catalog.values(), *facts.values()]:
        for link in spec.parents:
            mapping = link.mapping
            label = ", ".join(c if c == p else f"{c} -> {p}" for c, p in mapping.items())
            lines.append(f'    {link.parent} ||--o{{ {spec.name} : "{label}"')
    stored = catalog_columns()
    shown = [name for name in catalog if name not in ("schema_migrations", "saved_queries")]
    for name in shown:
        lines.append(_entity(name, stored[name]))
    for name, spec in facts.items():
        lines.append(_entity(name, [(f.name, duckdb_type(f.type).lower()) for f in spec.schema]))
    return "\n".join(lines)


def _entity(name: str, columns: list[tuple[str, str]]) -> str:
    body = " ".join(f"{dtype} {column}" for column, dtype in columns)
    return f"    {name} {{ {body} }}"
