"""Reading a committed corpus: what other kinds need of it."""

from __future__ import annotations

import numpy as np

from quanta_db.errors import InputError


def corpus_row(store, corpus: str) -> dict:
    """The catalog row of ``corpus``; a clear error when it was never ingested."""
    rows = store.catalog_rows("corpora", corpus=corpus)
    if not rows:
        raise InputError(f"unknown corpus {corpus!r}; ingest it first (`quanta-db ingest corpus`)")
    return rows[0]


def load_corpus_tokens(store, corpus: str, shard: tuple[int, int] | None = None):
    """Token ids of each document of ``corpus`` (read from Parquet), optionally one shard.

    Returns ``(doc_ids, sequences)``; shard i/n keeps documents with doc_id % n == i.
    """
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


def first_tokens(doc_ids: np.ndarray, sequences: list[np.ndarray], n_tokens: int | None):
    """The documents in order, cut so that at most ``n_tokens`` tokens remain."""
    if n_tokens is None:
        return doc_ids, sequences
    lengths = np.cumsum([len(s) for s in sequences])
    keep = min(int(np.searchsorted(lengths, n_tokens, side="left")) + 1, len(sequences))
    kept = list(sequences[:keep])
    if kept:
        kept[-1] = kept[-1][: len(kept[-1]) - max(0, int(lengths[keep - 1]) - n_tokens)]
    return doc_ids[:keep], kept
