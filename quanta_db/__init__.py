"""quanta-db: a DuckDB + Parquet database of language-model interpretability results.

Open a store with :func:`open_store`; each ingest job is a function taking the store first::

    store = quanta_db.open_store("my-store", create=True)
    quanta_db.ingest_corpus(store, "pile.jsonl.zst", name="pile", tokenizer="EleutherAI/pythia-70m")
    quanta_db.ingest_losses(store, "EleutherAI/pythia-70m", corpus="pile", steps=[0, 143000])
    store.query_df("SELECT * FROM loss_curve")

Jobs are imported on first use, so ``import quanta_db`` stays light (no torch).
"""

from importlib import import_module

from quanta_db.version import __version__

# job function -> module that defines it
_JOBS = {
    "ingest_corpus": "quanta_db.results.corpus.job",
    "ingest_contexts": "quanta_db.results.corpus.contexts",
    "ingest_dm_math": "quanta_db.results.corpus.dm_math",
    "ingest_filters": "quanta_db.results.filters.job",
    "ingest_losses": "quanta_db.results.losses.job",
    "ingest_clusters": "quanta_db.results.quanta.job",
    "ingest_sae": "quanta_db.results.sae.job",
}


def open_store(path, create: bool = False):
    """Open the store at ``path`` (a directory holding ``catalog.duckdb`` and ``tables/``).

    With ``create=True`` a missing or empty directory becomes a new, migrated store.
    """
    from quanta_db.store.store import Store

    return Store.open(path, create=create)


def __getattr__(name: str):
    if name in _JOBS:
        return getattr(import_module(_JOBS[name]), name)
    raise AttributeError(f"module 'quanta_db' has no attribute {name!r}")


__all__ = ["open_store", "__version__", *_JOBS]
