import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from transformers import AutoTokenizer

from quanta_db.errors import InputError
from quanta_db.results.corpus import job as corpus_job
from quanta_db.results.corpus.job import ingest_corpus
from quanta_db.results.corpus.tokens import token_columns
from tests.helpers import staging_entries


def _reference_tokens(records, tokenizer_dir, max_tokens):
    """Brute force: tokenize each document alone, then number predictable tokens in order."""
    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    rows, canonical = [], 0
    for doc_id, record in enumerate(records):
        ids = tok.encode(record["text"], add_special_tokens=False)[:max_tokens]
        for pos, token_id in enumerate(ids):
            rows.append((doc_id, pos, token_id, None if pos == 0 else canonical))
            canonical += pos > 0
    return rows


def test_tokens_match_brute_force_reference(corpus_store, toy_inputs):
    got = corpus_store.query_df("SELECT doc_id, pos, token_id, canonical_idx FROM tokens ORDER BY doc_id, pos")
    got_rows = [(int(d), int(p), int(t), None if c is pd_na() else int(c)) for d, p, t, c in got.itertuples(index=False)]
    assert got_rows == _reference_tokens(toy_inputs["records"], toy_inputs["tokenizer"], 128)


def pd_na():
    import pandas as pd

    return pd.NA


def test_canonical_index_starts_at_second_token_and_skips_empty_documents(corpus_store):
    first = corpus_store.query_df("SELECT doc_id, pos FROM tokens WHERE canonical_idx = 0")
    assert first.values.tolist() == [[0, 1]]
    empty = corpus_store.query_df("SELECT n_tokens FROM documents WHERE doc_id = 3")
    assert empty["n_tokens"].tolist() == [0]
    stats = corpus_store.query_df(
        "SELECT count(canonical_idx) AS n, max(canonical_idx) AS hi, count(DISTINCT canonical_idx) AS d FROM tokens"
    )
    assert stats["n"][0] == stats["hi"][0] + 1 == stats["d"][0]
    corpora = corpus_store.query_df("SELECT n_predictable, n_tokens, n_docs FROM corpora")
    assert corpora["n_predictable"][0] == stats["n"][0]


def test_token_columns_closed_form():
    cols = token_columns(np.array([5, 6, 7]), np.array([3, 0, 2]), canonical_start=10)
    assert cols["doc_id"].tolist() == [5, 5, 5, 7, 7]
    assert cols["pos"].tolist() == [0, 1, 2, 0, 1]
    assert cols["canonical_idx"].tolist() == [-1, 10, 11, -1, 12]


def test_documents_keep_text_subset_and_truncated_lengths(corpus_store, toy_inputs):
    docs = corpus_store.query_df("SELECT doc_id, subset, text, n_tokens FROM documents ORDER BY doc_id")
    records = toy_inputs["records"]
    assert docs["text"].tolist() == [r["text"] for r in records]
    assert docs["subset"].tolist() == [r["meta"]["pile_set_name"] for r in records]
    assert docs["n_tokens"].max() == 128


def test_vocab_decodes_each_token(corpus_store, toy_inputs):
    tok = AutoTokenizer.from_pretrained(str(toy_inputs["tokenizer"]))
    vocab = corpus_store.query_df("SELECT token_id, token FROM vocab ORDER BY token_id")
    assert len(vocab) == len(tok)
    sample = vocab.iloc[300]
    assert sample["token"] == tok.decode([int(sample["token_id"])])


def test_zst_and_parquet_sources_give_the_same_tokens(store, toy_inputs, tmp_path):
    raw = toy_inputs["corpus"].read_bytes()
    zst = tmp_path / "c.jsonl.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(raw))
    parquet = tmp_path / "c.parquet"
    records = toy_inputs["records"]
    pq.write_table(pa.table({"text": [r["text"] for r in records],
                             "pile_set_name": [r["meta"]["pile_set_name"] for r in records]}), parquet)
    for name, source in (("plain", toy_inputs["corpus"]), ("zst", zst), ("pq", parquet)):
        ingest_corpus(store, source, name, str(toy_inputs["tokenizer"]), max_tokens=64, progress=False)
    per_corpus = store.query_df(
        "SELECT corpus, list(token_id ORDER BY doc_id, pos) AS ids, list(subset ORDER BY doc_id) AS s FROM tokens "
        "JOIN documents USING (corpus, doc_id) GROUP BY corpus ORDER BY corpus"
    )
    ids = per_corpus["ids"].tolist()
    assert list(ids[0]) == list(ids[1]) == list(ids[2])


def test_identical_rerun_is_a_noop_and_force_replaces(corpus_store, toy_inputs, store_snapshot):
    before = store_snapshot(corpus_store)
    result = ingest_corpus(corpus_store, toy_inputs["corpus"], "toy", str(toy_inputs["tokenizer"]), max_tokens=128,
                           progress=False)
    assert result.skipped and store_snapshot(corpus_store) == before
    with pytest.raises(InputError, match="already exists"):
        ingest_corpus(corpus_store, toy_inputs["corpus"], "toy", str(toy_inputs["tokenizer"]), max_tokens=32,
                      progress=False)
    assert store_snapshot(corpus_store) == before
    ingest_corpus(corpus_store, toy_inputs["corpus"], "toy", str(toy_inputs["tokenizer"]), max_tokens=32,
                  force=True, progress=False)
    assert corpus_store.query_df("SELECT max(pos) AS m FROM tokens")["m"][0] == 31
    assert corpus_store.query_df("SELECT count(*) AS n FROM corpora")["n"][0] == 1


def test_max_docs_limits_documents(store, toy_inputs):
    ingest_corpus(store, toy_inputs["corpus"], "few", str(toy_inputs["tokenizer"]), max_docs=5, progress=False)
    assert store.query_df("SELECT count(*) AS n FROM documents")["n"][0] == 5


@pytest.mark.parametrize("content, message", [
    ('{"text": "ok"}\nnot json\n', "line 2 is not JSON"),
    ('{"txt": "no text field"}\n', "no string field 'text'"),
    ('', "holds no documents"),
])
def test_malformed_sources_fail_and_leave_store_unchanged(store, toy_inputs, tmp_path, store_snapshot, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    before = store_snapshot(store)
    with pytest.raises(InputError, match=message):
        ingest_corpus(store, bad, "bad", str(toy_inputs["tokenizer"]), progress=False)
    assert store_snapshot(store) == before
    assert staging_entries(store) == []


def test_missing_source_and_bad_tokenizer(store, toy_inputs, tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        ingest_corpus(store, tmp_path / "nope.jsonl", "x", str(toy_inputs["tokenizer"]))
    with pytest.raises(InputError, match="does not load"):
        ingest_corpus(store, toy_inputs["corpus"], "x", str(tmp_path))
    corrupt = tmp_path / "c.parquet"
    corrupt.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a readable Parquet"):
        ingest_corpus(store, corrupt, "x", str(toy_inputs["tokenizer"]))


def test_exception_mid_ingest_leaves_store_unchanged(corpus_store, toy_inputs, monkeypatch, store_snapshot):
    before = store_snapshot(corpus_store)
    monkeypatch.setattr(corpus_job, "CHUNK_DOCS", 10)
    calls = {"n": 0}
    original = corpus_job.encode

    def failing_encode(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("tokenizer crashed")
        return original(*args, **kwargs)

    monkeypatch.setattr(corpus_job, "encode", failing_encode)
    with pytest.raises(RuntimeError):
        ingest_corpus(corpus_store, toy_inputs["corpus"], "other", str(toy_inputs["tokenizer"]), progress=False)
    assert store_snapshot(corpus_store) == before
    assert staging_entries(corpus_store) == []


def test_pile_meta_subset_in_jsonl(tmp_path, store, toy_inputs):
    path = tmp_path / "pile.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "meta": {"pile_set_name": s}})
                              for t, s in [("a b c", "ArXiv"), ("d e", "Github")]) + "\n")
    ingest_corpus(store, path, "pile", str(toy_inputs["tokenizer"]), progress=False)
    assert store.query_df("SELECT subset FROM documents ORDER BY doc_id")["subset"].tolist() == ["ArXiv", "Github"]


def _zst_in_blocks(records, lines_per_block=5) -> bytes:
    """One zstd frame written in flushed blocks (as a streaming writer does)."""
    compressor = zstandard.ZstdCompressor().compressobj()
    data = b""
    for start in range(0, len(records), lines_per_block):
        chunk = "".join(json.dumps(r) + "\n" for r in records[start:start + lines_per_block]).encode()
        data += compressor.compress(chunk) + compressor.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
    return data + compressor.flush()


@pytest.mark.parametrize("cut, message", [("after_block", "after part of its text"),
                                          ("first_block", "inside its first block")])
def test_truncated_zstd_is_refused(store, toy_inputs, tmp_path, store_snapshot, cut, message):
    records = toy_inputs["records"]
    whole = _zst_in_blocks(records)
    first_block = _zst_in_blocks(records[:5])
    # Cut right after the second flushed block: every line read so far is valid JSON.
    cut_at = {"after_block": len(_zst_in_blocks(records[:10])) - 3, "first_block": 8}[cut]
    assert cut_at < len(whole) and (cut != "first_block" or cut_at < len(first_block))
    path = tmp_path / "cut.jsonl.zst"
    path.write_bytes(whole[:cut_at])
    before = store_snapshot(store)
    with pytest.raises(InputError, match=f"truncated.*{message}"):
        ingest_corpus(store, path, "cut", str(toy_inputs["tokenizer"]), progress=False)
    assert store_snapshot(store) == before
    good = tmp_path / "whole.jsonl.zst"
    good.write_bytes(whole + zstandard.ZstdCompressor().compress(b'{"text": "a second frame"}\n'))
    result = ingest_corpus(store, good, "whole", str(toy_inputs["tokenizer"]), progress=False)
    assert result.details["n_docs"] == len(records) + 1


def test_null_text_is_refused_in_parquet_as_in_jsonl(store, toy_inputs, tmp_path, store_snapshot):
    path = tmp_path / "nulls.parquet"
    pq.write_table(pa.table({"text": ["fine", None, "also fine"]}), path)
    before = store_snapshot(store)
    with pytest.raises(InputError, match="row 2 has no string field 'text'"):
        ingest_corpus(store, path, "nulls", str(toy_inputs["tokenizer"]), progress=False)
    jsonl = tmp_path / "nulls.jsonl"
    jsonl.write_text('{"text": "fine"}\n{"text": null}\n')
    with pytest.raises(InputError, match="line 2 has no string field 'text'"):
        ingest_corpus(store, jsonl, "nulls", str(toy_inputs["tokenizer"]), progress=False)
    assert store_snapshot(store) == before


def test_a_missing_subset_column_is_refused(store, toy_inputs, tmp_path, store_snapshot):
    before = store_snapshot(store)
    with pytest.raises(InputError, match="no field 'domain' \\(--subset-column\\)"):
        ingest_corpus(store, toy_inputs["corpus"], "x", str(toy_inputs["tokenizer"]), subset_column="domain",
                      progress=False)
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"text": ["a"]}), path)
    with pytest.raises(InputError, match="no column 'domain' \\(--subset-column\\)"):
        ingest_corpus(store, path, "x", str(toy_inputs["tokenizer"]), subset_column="domain", progress=False)
    assert store_snapshot(store) == before
