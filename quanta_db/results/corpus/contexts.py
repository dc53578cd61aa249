"""``ingest contexts``: K random token windows per subset, as a corpus of their own.

For each subset (pile_set_name), each context draws a random document of that subset
(uniformly, with replacement), then a random window of up to L tokens inside it, so contexts
are not just document beginnings. Each context records its source corpus, document and
start position.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from quanta_db.errors import InputError
from quanta_db.job import JobResult, committed
from quanta_db.params import job_function
from quanta_db.results.corpus.job import stage_corpus_row, start_corpus_run, write_corpus_chunk
from quanta_db.results.corpus.params import ContextsParams
from quanta_db.results.corpus.read import corpus_row, load_corpus_tokens
from quanta_db.runtime.tokenizer import load_tokenizer
from quanta_db.store.store import Store


def sample_contexts(subsets: np.ndarray, lengths: np.ndarray, per_subset: int, length: int, seed: int):
    """(document index, start) pairs: per subset in sorted order, ``per_subset`` draws."""
    rng = np.random.default_rng(seed)
    picks = []
    for subset in sorted(set(subsets.tolist()), key=str):
        candidates = np.flatnonzero((subsets == subset) & (lengths >= 2))
        if len(candidates) == 0:
            continue
        for doc in rng.choice(candidates, size=per_subset, replace=True):
            start = int(rng.integers(0, lengths[doc] - length + 1)) if lengths[doc] > length else 0
            picks.append((int(doc), start))
    return picks


def _ingest_contexts(store: Store, params: ContextsParams) -> JobResult:
    """Sample ``per_subset`` windows of up to ``length`` tokens per subset of ``source_corpus``."""
    source_corpus, name, per_subset, length, seed = (params.source_corpus, params.name, params.per_subset,
                                                     params.length, params.seed)
    info = corpus_row(store, source_corpus)
    run, skipped = start_corpus_run(store, "contexts", params.identity(from_run=info["run_id"]), [name], params.force,
                                    from_corpus=source_corpus)
    if skipped:
        return skipped
    with run:
        doc_ids, sequences = load_corpus_tokens(store, source_corpus)
        docs = store.read_fact("documents", ["doc_id", "subset"], partition={"corpus": source_corpus})
        subset_of = dict(zip(docs.column("doc_id").to_pylist(), docs.column("subset").to_pylist()))
        subsets = np.array([subset_of.get(int(d)) or "" for d in doc_ids], dtype=object)
        picks = sample_contexts(subsets, np.array([len(s) for s in sequences]), per_subset, length, seed)
        if not picks:
            raise InputError(f"corpus {source_corpus!r} has no document with two or more tokens")
        windows = [sequences[d][start:start + length] for d, start in picks]
        texts = _decode(store, info["tokenizer"], windows)
        counts = write_corpus_chunk(
            run, name, np.arange(len(picks), dtype=np.int64), [subsets[d] or None for d, _ in picks], texts, windows,
            canonical_start=0,
            extra_doc_columns={
                "source_corpus": pa.repeat(source_corpus, len(picks)),
                "source_doc_id": np.array([doc_ids[d] for d, _ in picks], dtype=np.int64),
                "source_start": np.array([s for _, s in picks], dtype=np.int32),
            },
        )
        stage_corpus_row(run, name, f"contexts of {source_corpus}", info["tokenizer"], info["vocab_hash"], length,
                         counts, origin="contexts", parent_corpus=source_corpus)
        rows = run.commit()
    return committed(run, rows, f"contexts {name!r}: {counts['n_docs']} contexts, {counts['n_tokens']:,} tokens",
                     counts)


ingest_contexts = job_function(ContextsParams, _ingest_contexts)


def _decode(store: Store, tokenizer_name: str, windows: list[np.ndarray]) -> list[str | None]:
    """Text of each window, when the corpus's tokenizer still loads (else NULL)."""
    rows = store.catalog_rows("tokenizers", tokenizer=tokenizer_name)
    try:
        tok = load_tokenizer(rows[0]["source"])
    except Exception:
        return [None] * len(windows)
    return tok.batch_decode([w.tolist() for w in windows], clean_up_tokenization_spaces=False)
