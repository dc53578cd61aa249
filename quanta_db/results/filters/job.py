"""``ingest filters``: boolean token filters (trigram, bigram / induction) of a corpus."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from quanta_db.job import Ingest, JobResult, committed
from quanta_db.params import job_function
from quanta_db.results.corpus.read import corpus_row, load_corpus_tokens
from quanta_db.results.filters.compute import FILTER_ORDERS, canonical_filter, repeated_ngram
from quanta_db.results.filters.params import FilterParams
from quanta_db.store.store import Store

CHUNK_DOCS = 4096


def _ingest_filters(store: Store, params: FilterParams) -> JobResult:
    """Compute ``filter`` for every token of ``corpus`` into ``token_filters``."""
    corpus, name = params.corpus, canonical_filter(params.filter)
    info = corpus_row(store, corpus)
    job = Ingest(store, "filters", params.identity(filter=name, corpus_run=info["run_id"]), params.force)
    if job.previous:
        return job.skipped(f"{name} filter of {corpus!r} already ingested")
    store.see(job.seen, "token_filters", corpus=corpus, filter=name)
    store.see(job.seen, "corpora", is_input=True, corpus=corpus)
    doc_ids, sequences = load_corpus_tokens(store, corpus)
    with job.begin() as run:
        run.replace("token_filters", corpus=corpus, filter=name)
        n_true = 0
        for start in tqdm(range(0, len(sequences), CHUNK_DOCS), disable=not params.progress, desc=f"{name} {corpus}"):
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


ingest_filters = job_function(FilterParams, _ingest_filters)
