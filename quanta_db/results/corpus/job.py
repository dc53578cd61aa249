"""``ingest corpus``: documents, tokens (with pile-canonical indices) and the vocabulary."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from quanta_db.errors import InputError
from quanta_db.job import Ingest, JobResult, committed, file_fingerprint
from quanta_db.params import job_function
from quanta_db.results.corpus.params import CorpusParams
from quanta_db.results.corpus.source import check_source, iter_documents
from quanta_db.results.corpus.tokens import token_columns
from quanta_db.runtime.tokenizer import encode, load_tokenizer, tokenizer_key, vocab_hash, vocab_table
from quanta_db.store.store import Store

CHUNK_DOCS = 1024


def _ingest_corpus(store: Store, params: CorpusParams) -> JobResult:
    """Tokenize ``source`` into corpus ``name``; an identical earlier run makes this a no-op."""
    source, name = params.source, params.name
    check_source(source)
    tok = prepare_tokenizer(store, params.tokenizer, params.tokenizer_name)
    identity = params.identity(source=file_fingerprint(source), tokenizer=str(params.tokenizer),
                               tokenizer_name=tok.name, vocab_hash=tok.vocab_hash)
    run, skipped = start_corpus_run(store, "corpus", identity, [name], params.force)
    if skipped:
        return skipped
    with run:
        stage_tokenizer(run, tok)
        counts = _write_documents(run, tok.tokenizer, source, name, params.max_docs, params.max_tokens,
                                  params.text_column, params.subset_column, params.progress)
        stage_corpus_row(run, name, str(source), tok.name, tok.vocab_hash, params.max_tokens, counts)
        rows = run.commit()
    return committed(run, rows, f"corpus {name!r}: {counts['n_docs']} documents, {counts['n_tokens']} tokens", counts)


ingest_corpus = job_function(CorpusParams, _ingest_corpus)


@dataclass
class TokenizerRef:
    tokenizer: object
    name: str
    source: str
    vocab_hash: str
    known: bool  # already registered in the store


def prepare_tokenizer(store: Store, source: str, name: str | None = None) -> TokenizerRef:
    """Load a tokenizer and check its name is not taken by a different vocabulary."""
    tok = load_tokenizer(source)
    tok_name = name or tokenizer_key(source)
    vhash = vocab_hash(tok)
    rows = store.catalog_rows("tokenizers", tokenizer=tok_name)
    if rows and rows[0]["vocab_hash"] != vhash:
        raise InputError(f"tokenizer name {tok_name!r} is already used for a different vocabulary; pass --tokenizer-name")
    return TokenizerRef(tok, tok_name, str(source), vhash, bool(rows))


def stage_tokenizer(run, ref: TokenizerRef) -> None:
    """Stage the vocabulary and catalog row of a tokenizer the store does not know yet; if a
    concurrent run registers the same vocabulary first, the commit keeps only that one."""
    if ref.known:
        return
    vocab = vocab_table(ref.tokenizer, ref.name)
    row = {"tokenizer": ref.name, "source": ref.source, "vocab_hash": ref.vocab_hash,
           "vocab_size": vocab.num_rows, "run_id": run.run_id}
    run.register("tokenizers", row, key=["tokenizer"], same=["vocab_hash"], facts={"vocab": vocab})


def start_corpus_run(store: Store, job: str, params: dict, names: list[str], force: bool,
                     from_corpus: str | None = None):
    """Begin a run that (re)creates the corpora ``names``: ``(run, None)``, or ``(None, skipped)``.

    An identical earlier run makes the job a no-op; an existing corpus of the same name is an
    error unless ``force``, which replaces it together with everything derived from it
    (documents, tokens, filters, alignments, losses, clusterings: whatever declares it a parent).
    """
    ingest = Ingest(store, job, params, force)
    if ingest.previous:
        return None, ingest.skipped(f"{', '.join(names)}: already ingested by run {ingest.previous}")
    existing = [n for n in names if store.see(ingest.seen, "corpora", corpus=n)]
    if existing and not force:
        raise InputError(f"corpus {existing[0]!r} already exists with other parameters; pass --force to replace it")
    if from_corpus:
        store.see(ingest.seen, "corpora", is_input=True, corpus=from_corpus)
    run = ingest.begin()
    for name in existing:
        run.replace("corpora", corpus=name)
    return run, None


def stage_corpus_row(run, name: str, source: str, tokenizer: str, vocab_hash: str, max_tokens: int | None,
                     counts: dict, origin: str = "text", parent_corpus: str | None = None) -> None:
    """Stage the ``corpora`` catalog row of corpus ``name`` (counts from :func:`write_corpus_chunk`)."""
    run.upsert("corpora", [{
        "corpus": name, "source": source, "tokenizer": tokenizer, "vocab_hash": vocab_hash, "max_tokens": max_tokens,
        **counts, "run_id": run.run_id, "created_at": run.started_at, "origin": origin, "parent_corpus": parent_corpus,
    }], key=["corpus"])


def write_corpus_chunk(run, name: str, doc_ids: np.ndarray, subsets: list, texts: list, id_lists: list,
                       canonical_start: int, extra_doc_columns: dict | None = None) -> dict:
    """Stage one chunk of documents and their tokens; returns the chunk's counts.

    ``canonical_start`` is the number of predictable tokens in earlier chunks, so the
    canonical index runs on across chunks in document order.
    """
    lengths = np.array([len(x) for x in id_lists], dtype=np.int64)
    columns = token_columns(doc_ids, lengths, canonical_start=canonical_start)
    canonical = columns["canonical_idx"]
    run.write("documents", pa.table({
        "corpus": pa.repeat(name, len(doc_ids)), "doc_id": doc_ids, "subset": pa.array(subsets, pa.string()),
        "n_tokens": lengths.astype(np.int32), "text": pa.array(texts, pa.string()), **(extra_doc_columns or {}),
    }))
    run.write("tokens", pa.table({
        "corpus": pa.repeat(name, len(canonical)), "doc_id": columns["doc_id"], "pos": columns["pos"],
        "token_id": np.fromiter(itertools.chain.from_iterable(id_lists), dtype=np.int32, count=int(lengths.sum())),
        "canonical_idx": pa.array(canonical, mask=canonical < 0),
    }))
    return {"n_docs": len(doc_ids), "n_tokens": int(lengths.sum()), "n_predictable": int((canonical >= 0).sum())}


def _write_documents(run, tok, source, name, max_docs, max_tokens, text_column, subset_column, progress) -> dict:
    docs = iter_documents(source, text_column, subset_column, max_docs)
    totals = {"n_docs": 0, "n_tokens": 0, "n_predictable": 0}
    with tqdm(total=max_docs, unit="doc", desc=f"corpus {name}", disable=not progress) as bar:
        while chunk := list(itertools.islice(docs, CHUNK_DOCS)):
            ids = encode(tok, [d.text for d in chunk], max_tokens)
            doc_ids = np.array([d.doc_id for d in chunk], dtype=np.int64)
            counts = write_corpus_chunk(run, name, doc_ids, [d.subset for d in chunk], [d.text for d in chunk], ids,
                                        canonical_start=totals["n_predictable"])
            totals = {k: totals[k] + counts[k] for k in totals}
            bar.update(len(chunk))
    if totals["n_docs"] == 0:
        raise InputError(f"corpus source {source} holds no documents")
    return totals
