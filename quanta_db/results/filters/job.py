"""``ingest filters``: boolean token filters (trigram, bigram / induction) of a corpus."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from quanta_db.errors import InputError
from quanta_db.job import JobResult, committed
from quanta_db.results.corpus.read import corpus_row, load_corpus_tokens
from quanta_db.results.filters.compute import FILTER_ORDERS, canonical_filter, repeated_ngram
from quanta_db.store.store import Store

CHUNK_DOCS = 4096


def ingest_filters(store: Store, corpus: str, kind: str, force: bool = False, progress: bool = True) -> JobResult:
    """Compute filter ``kind`` for every token of ``corpus`` into ``token_filters``."""
    name = canonical_filter(kind)
    if name not in FILTER_ORDERS:
        raise InputError(f"unknown filter {kind!r}; choose trigram, bigram or induction")
    info = corpus_row(store, corpus)
    params = {"corpus": corpus, "filter": name, "corpus_run": info["run_id"]}
    seen = store.observe("filters", params)
    if seen.previous and not force:
        return JobResult(seen.previous, 0, skipped=True, message=f"{name} filter of {corpus!r} already ingested")
    store.see(seen, "token_filters", corpus=corpus, filter=name)
    store.see(seen, "corpora", is_input=True, corpus=corpus)
    doc_ids, sequences = load_corpus_tokens(store, corpus)
    with store.begin_run("filters", params, observation=seen) as run:
        run.replace("token_filters", corpus=corpus, filter=name)
        n_true = 0
        for start in tqdm(range(0, len(sequences), CHUNK_DOCS), disable=not progress, desc=f"{name} {corpus}"):
            chunk = sequences[start:start + CHUNK_DOCS]
            values = np.concatenate([repeated_ngram(s, FILTER_ORDERS[name]) for s in chunk])
            lengths = [len(s) for s in chunk]
            n_true += int(values.sum())
            run.write("token_filters", pa.table({
                "corpus": pa.repeat(corpus, len(values)),
                "doc_id": np.repeat(doc_ids[start:start + CHUNK_DOCS], lengths),
                "pos": np.concatenate([np.arange(n, dtype=np.int32) for n in lengths]),
                "filter": pa.repeat(name, len(values)), "value": values,
            }))
        rows = run.commit()
    return committed(run, rows, f"{name} filter of {corpus!r}: {n_true:,} of {rows:,} tokens true")
