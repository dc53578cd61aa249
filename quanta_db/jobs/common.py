"""What every ingest job shares: the result it reports and source fingerprints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class JobResult:
    run_id: str | None
    rows_written: int
    skipped: bool = False
    message: str = ""
    details: dict = field(default_factory=dict)


def file_fingerprint(path) -> dict:
    """Identity of an input file for the run's parameter hash: resolved path, size, mtime."""
    path = Path(path).resolve()
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` → (i, n) with 0 <= i < n."""
    if text is None:
        return None
    from quanta_db.errors import InputError

    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise InputError(f"--shard expects i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise InputError(f"--shard {text}: need 0 <= i < n")
    return index, count


def corpus_row(store, corpus: str) -> dict:
    """The catalog row of ``corpus``; a clear error when it was never ingested."""
    from quanta_db.errors import InputError

    rows = store.catalog_rows("corpora", corpus=corpus)
    if not rows:
        raise InputError(f"unknown corpus {corpus!r}; ingest it first (`quanta-db ingest corpus`)")
    return rows[0]


def load_corpus_tokens(store, corpus: str, shard: tuple[int, int] | None = None):
    """Token ids of each document of ``corpus`` (read from Parquet), optionally one shard.

    Returns ``(doc_ids, sequences)``; shard i/n keeps documents with doc_id % n == i.
    """
    import numpy as np

    table = store.read_fact("tokens", ["doc_id", "pos", "token_id"], partition={"corpus": corpus})
    table = table.sort_by([("doc_id", "ascending"), ("pos", "ascending")])
    doc = table.column("doc_id").to_numpy()
    ids = table.column("token_id").to_numpy()
    if len(doc) == 0:
        return np.zeros(0, dtype=np.int64), []
    starts = np.flatnonzero(np.diff(doc)) + 1
    doc_ids = doc[np.r_[0, starts]]
    sequences = np.split(ids, starts)
    if shard is not None:
        keep = np.flatnonzero(doc_ids % shard[1] == shard[0])
        doc_ids, sequences = doc_ids[keep], [sequences[i] for i in keep]
    return doc_ids, sequences
