"""quanta-db: a DuckDB + Parquet database of language-model interpretability results.

Open a store with :func:`open_store`; each ingest job is a function taking the store first::

    store = quanta_db.open_store("my-store", create=True)
    quanta_db.ingest_corpus(store, "pile.jsonl.zst", name="pile", tokenizer="EleutherAI/pythia-70m")
    quanta_db.ingest_losses(store, "EleutherAI/pythia-70m", corpus="pile", steps=[0, 143000])
    store.query_df("SELECT * FROM loss_curve")

Jobs are the ones the result kinds declare (:mod:`quanta_db.kinds`), imported on first use, so
``import quanta_db`` stays light (no torch).
"""

from importlib import import_module
from pathlib import Path

from quanta_db.version import __version__ as __version__

# The command line is quanta_db.cli: a wheel installs the repository's top-level cli/ folder as
# quanta_db/cli/; in a source checkout it stays at the top, so the checkout's root joins this
# package's search path (nothing else there is a package of ours: tests and bench import quanta_db).
_CHECKOUT = Path(__file__).resolve().parent.parent
if not Path(__file__).with_name("cli").is_dir() and (_CHECKOUT / "cli" / "main.py").is_file():
    __path__.append(str(_CHECKOUT))


def open_store(path, create: bool = False, background_refresh: bool = False):
    """Open the store at ``path`` (a directory holding its catalog and ``tables/``).

    With ``create=True`` a missing or empty directory becomes a new, migrated store. Its queries
    see every commit that landed before they began; with ``background_refresh=True`` (a reader
    that polls) they never wait for another process's commit, which they show once this process
    has taken its new state in the background (see :meth:`Store.query`).
    """
    from quanta_db.store.store import Store

    return Store.open(path, create=create, background_refresh=background_refresh)


def __getattr__(name: str):
    # Every job any result kind declares (quanta_db.kinds), imported on first use. (import_module:
    # a `from quanta_db import ...` here would ask this function for the name again.)
    if name.startswith("__") and name != "__all__":
        raise AttributeError(name)
    kinds = import_module("quanta_db.kinds")
    if name == "__all__":
        return ["open_store", "__version__", *kinds.jobs()]
    return kinds.job(name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__getattr__("__all__")})
