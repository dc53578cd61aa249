"""quanta-db: a DuckDB + Parquet database of language-model interpretability results.

The public entry point is :func:`open_store`; everything else hangs off the returned
:class:`~quanta_db.store.store.Store`.
"""

__version__ = "0.1.0"


def open_store(path, create: bool = False):
    """Open the store at ``path`` (a directory holding ``catalog.duckdb`` and ``tables/``).

    With ``create=True`` a missing or empty directory becomes a new, migrated store.
    """
    from quanta_db.store.store import Store

    return Store.open(path, create=create)


__all__ = ["open_store", "__version__"]
