"""``ingest corpus``: documents, tokens (with pile-canonical indices) and the vocabulary."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from quanta_db.compute.tokens import token_columns
from quanta_db.errors import InputError
from quanta_db.jobs.common import JobResult, file_fingerprint
from quanta_db.sources.corpus import check_source, iter_documents
from quanta_db.sources.tokenizer import encode, load_tokenizer, tokenizer_key, vocab_hash, vocab_table
from quanta_db.store.store import Store

CHUNK_DOCS = 1024


def ingest_corpus(
    store: Store,
    source,
    name: str,
    tokenizer: str,
    max_docs: int | None = None,
    max_tokens: int = 1024,
    text_column: str = "text",
    subset_column: str | None = None,
    tokenizer_name: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> JobResult:
    """Tokenize ``source`` into corpus ``name``; an identical earlier run makes this a no-op."""
    if max_tokens is not None and max_tokens < 1:
        raise InputError("--max-tokens must be at least 1")
    check_source(source)
    tok = load_tokenizer(tokenizer)
    tok_name = tokenizer_name or tokenizer_key(tokenizer)
    vhash = vocab_hash(tok)
    params = {
        "source": file_fingerprint(source), "name": name, "tokenizer": str(tokenizer), "tokenizer_name": tok_name,
        "vocab_hash": vhash, "max_docs": max_docs, "max_tokens": max_tokens,
        "text_column": text_column, "subset_column": subset_column,
    }
    previous = store.find_committed_run("corpus", params)
    if previous and not force:
        return JobResult(previous, 0, skipped=True, message=f"corpus {name!r} already ingested by run {previous}")
    existing = _existing(store, name, tok_name)
    if existing["corpus"] and not force:
        raise InputError(f"corpus {name!r} already exists with other parameters; pass --force to replace it")
    if existing["tokenizer_hash"] not in (None, vhash):
        raise InputError(f"tokenizer name {tok_name!r} is already used for a different vocabulary; pass --tokenizer-name")

    with store.begin_run("corpus", params) as run:
        if existing["corpus"]:
            run.supersede("documents", {"corpus": name})
            run.supersede("tokens", {"corpus": name})
        if existing["tokenizer_hash"] is None:
            vocab = vocab_table(tok, tok_name)
            run.write("vocab", vocab)
            run.upsert("tokenizers", [{"tokenizer": tok_name, "source": str(tokenizer), "vocab_hash": vhash,
                                       "vocab_size": vocab.num_rows, "run_id": run.run_id}], key=["tokenizer"])
        counts = _write_documents(run, tok, source, name, max_docs, max_tokens, text_column, subset_column, progress)
        run.upsert("corpora", [{
            "corpus": name, "source": str(source), "tokenizer": tok_name, "vocab_hash": vhash,
            "max_tokens": max_tokens, **counts, "run_id": run.run_id, "created_at": run.started_at,
        }], key=["corpus"])
        rows = run.commit()
    return JobResult(run.run_id, rows, message=f"corpus {name!r}: {counts['n_docs']} documents, "
                     f"{counts['n_tokens']} tokens", details=counts)


def _existing(store: Store, corpus: str, tok_name: str) -> dict:
    with store.read() as con:
        has_corpus = con.execute("SELECT count(*) FROM corpora WHERE corpus = ?", [corpus]).fetchone()[0] > 0
        row = con.execute("SELECT vocab_hash FROM tokenizers WHERE tokenizer = ?", [tok_name]).fetchone()
    return {"corpus": has_corpus, "tokenizer_hash": row[0] if row else None}


def _write_documents(run, tok, source, name, max_docs, max_tokens, text_column, subset_column, progress) -> dict:
    docs = iter_documents(source, text_column, subset_column, max_docs)
    n_docs = n_tokens = n_predictable = 0
    with tqdm(total=max_docs, unit="doc", desc=f"corpus {name}", disable=not progress) as bar:
        while chunk := list(itertools.islice(docs, CHUNK_DOCS)):
            ids = encode(tok, [d.text for d in chunk], max_tokens)
            lengths = np.array([len(x) for x in ids], dtype=np.int64)
            doc_ids = np.array([d.doc_id for d in chunk], dtype=np.int64)
            columns = token_columns(doc_ids, lengths, canonical_start=n_predictable)
            canonical = columns["canonical_idx"]
            run.write("documents", pa.table({
                "corpus": [name] * len(chunk), "doc_id": doc_ids, "subset": [d.subset for d in chunk],
                "n_tokens": lengths.astype(np.int32), "text": [d.text for d in chunk],
            }))
            run.write("tokens", pa.table({
                "corpus": pa.array([name] * len(canonical), pa.string()),
                "doc_id": columns["doc_id"], "pos": columns["pos"],
                "token_id": np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(lengths.sum())),
                "canonical_idx": pa.array(canonical, mask=canonical < 0),
            }))
            n_docs += len(chunk)
            n_tokens += int(lengths.sum())
            n_predictable += int((canonical >= 0).sum())
            bar.update(len(chunk))
    if n_docs == 0:
        raise InputError(f"corpus source {source} holds no documents")
    return {"n_docs": n_docs, "n_tokens": n_tokens, "n_predictable": n_predictable}
