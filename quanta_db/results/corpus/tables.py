"""Tables of the corpus kind."""

import pyarrow as pa

from quanta_db.store.tables import CatalogTable, FactTable, Link

TOKEN_KEY = ("corpus", "doc_id", "pos")

CATALOG_TABLES = [
    CatalogTable("tokenizers", ("tokenizer",), "Tokenizers by name: source, vocabulary hash and size."),
    CatalogTable("corpora", ("corpus",), "Corpora: source, tokenizer, truncation, counts, origin and parent corpus.",
                 parents=(Link("tokenizers", ("tokenizer",)),)),
]

FACT_TABLES = [
    FactTable(
        "vocab",
        [("tokenizer", pa.string()), ("token_id", pa.int32()), ("token", pa.string())],
        ("tokenizer",),
        "Each tokenizer's vocabulary: token_id and the decoded text of that single token.",
        parents=(Link("tokenizers", ("tokenizer",)),),
    ),
    FactTable(
        "documents",
        [("corpus", pa.string()), ("doc_id", pa.int64()), ("subset", pa.string()), ("n_tokens", pa.int32()),
         ("text", pa.string()), ("source_corpus", pa.string()), ("source_doc_id", pa.int64()),
         ("source_start", pa.int32())],
        ("corpus",),
        "One row per document (doc_id = its 0-based record in the source); sampled contexts name "
        "the corpus, document and token position they were cut from.",
        parents=(Link("corpora", ("corpus",)),),
    ),
    FactTable(
        "tokens",
        [("corpus", pa.string()), ("doc_id", pa.int64()), ("pos", pa.int32()), ("token_id", pa.int32()),
         ("canonical_idx", pa.int64())],
        ("corpus",),
        "Tokens of each document (truncated to max_tokens); canonical_idx numbers predictable tokens (pos >= 1).",
        parents=(Link("documents", ("corpus", "doc_id")),),
    ),
    FactTable(
        "token_alignments",
        [("corpus", pa.string()), ("doc_id", pa.int64()), ("pos", pa.int32()), ("ref_corpus", pa.string()),
         ("ref_doc_id", pa.int64()), ("ref_pos", pa.int32())],
        ("corpus",),
        "Token-for-token links between corpora, e.g. each few-shot DM-math token to its zero-shot twin.",
        split_by=("ref_corpus",),
        parents=(Link("tokens", TOKEN_KEY),
                 Link("tokens", {"ref_corpus": "corpus", "ref_doc_id": "doc_id", "ref_pos": "pos"})),
    ),
]
