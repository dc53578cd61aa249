"""The table registry, collected from what each result kind declares.

Each kind's declaration (:mod:`quanta_db.kinds`) names a module with ``FACT_TABLES`` and
``CATALOG_TABLES`` lists; nothing here names a kind, so adding one needs no edit here. The
store's own bookkeeping tables are declared below.
"""

from __future__ import annotations

import importlib
from functools import cache

from quanta_db.errors import QuantaError
from quanta_db.store.tables import CatalogTable, FactTable

STORE_TABLES = (
    CatalogTable("runs", ("run_id",), "Every committed ingest: job, parameters, versions, times, rows."),
    CatalogTable("files", ("path",), "Every committed Parquet file or artifact, with its run and partition."),
    CatalogTable("schema_migrations", ("version",), "Applied migrations with their checksums."),
    CatalogTable("saved_queries", ("name",), "Installed saved analyses."),
)


@cache
def _declarations() -> tuple[dict[str, FactTable], dict[str, CatalogTable], dict[str, str]]:
    facts: dict[str, FactTable] = {}
    catalog: dict[str, CatalogTable] = {t.name: t for t in STORE_TABLES}
    owner: dict[str, str] = {t.name: "store" for t in STORE_TABLES}
    from quanta_db.kinds import result_kinds

    for kind in result_kinds().values():
        if kind.tables is None:
            continue
        module = importlib.import_module(kind.tables)
        for spec in getattr(module, "FACT_TABLES", []):
            _register(facts, owner, spec, kind.name, catalog)
        for spec in getattr(module, "CATALOG_TABLES", []):
            _register(catalog, owner, spec, kind.name, facts)
    return facts, catalog, owner


def forget() -> None:
    """Read the declarations again on next use."""
    _declarations.cache_clear()


def _register(into: dict, owner: dict, spec, kind: str, other: dict) -> None:
    if spec.name in into or spec.name in other:
        raise QuantaError(f"table {spec.name!r} is declared by both {owner[spec.name]} and {kind}")
    into[spec.name] = spec
    owner[spec.name] = kind


def fact_tables() -> dict[str, FactTable]:
    """Every fact table, by name."""
    return _declarations()[0]


def catalog_tables() -> dict[str, CatalogTable]:
    """Every catalog table (the store's own first), by name."""
    return _declarations()[1]


def fact_table(name: str) -> FactTable:
    try:
        return fact_tables()[name]
    except KeyError:
        raise QuantaError(f"unknown fact table {name!r} (known: {', '.join(sorted(fact_tables()))})") from None


def children(parent: str) -> list[tuple[str, dict[str, str]]]:
    """(child table, {child column: parent column}) for every table that declares ``parent``."""
    found = []
    for spec in [*fact_tables().values(), *catalog_tables().values()]:
        for link in spec.parents:
            if link.parent == parent:
                found.append((spec.name, link.mapping))
    return found
