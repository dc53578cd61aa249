"""The cluster viewer: one self-contained HTML page per clustering.

Samples (preceding context, the answer token, following context) are stored once per
document as token ids plus the vocabulary subset they use, gzip-compressed and
base64-encoded in the page, and rendered one cluster at a time in the browser (tokens go in
as text nodes, so nothing in a token is ever interpreted as markup).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from quanta_db.errors import InputError
from quanta_db.reports.page import render_page
from quanta_db.results.corpus.read import load_corpus_tokens
from quanta_db.store.store import Store

TEMPLATE = Path(__file__).resolve().parent / "templates" / "clusters.html"


def cluster_page_data(store: Store, clustering: str, before: int, after: int) -> tuple[dict, dict]:
    """(meta, data) for the viewer of ``clustering``."""
    rows = store.catalog_rows("clusterings", clustering=clustering)
    if not rows:
        raise InputError(f"unknown clustering {clustering!r} (see `quanta-db query \"SELECT * FROM clusterings\"`)")
    meta = {k: rows[0][k] for k in ("clustering", "model", "step", "corpus", "n_tokens", "n_clusters",
                                    "similarity_method")}
    labels = store.read_fact("cluster_labels", ["corpus", "doc_id", "pos", "cluster"],
                             partition={"clustering": clustering}).to_pandas()
    corpus = meta["corpus"]
    doc_ids, sequences = load_corpus_tokens(store, corpus)
    index_of = {int(d): i for i, d in enumerate(doc_ids)}
    used = sorted(set(labels.doc_id.astype(int)))
    local = {d: k for k, d in enumerate(used)}
    last_pos = labels.groupby("doc_id").pos.max()
    pieces, offsets = [], [0]
    for d in used:
        pieces.append(sequences[index_of[d]][: int(last_pos[d]) + after + 1])
        offsets.append(offsets[-1] + len(pieces[-1]))
    ids = np.concatenate(pieces).astype(np.int64) if pieces else np.zeros(0, np.int64)
    labels = labels.sort_values(["cluster", "doc_id", "pos"]).reset_index(drop=True)
    n_clusters = int(labels.cluster.max()) + 1 if len(labels) else 0
    members = [labels.index[labels.cluster == k].tolist() for k in range(n_clusters)]
    tokenizer = store.catalog_rows("corpora", corpus=corpus)[0]["tokenizer"]
    vocab = store.read_fact("vocab", ["token_id", "token"], partition={"tokenizer": tokenizer}).to_pandas()
    wanted = set(ids.tolist())
    data = {
        "before": before, "after": after, "ids": ids.tolist(), "doc_offsets": offsets,
        "sample_doc": [local[int(d)] for d in labels.doc_id], "sample_pos": labels.pos.astype(int).tolist(),
        "members": members, "sizes": [len(m) for m in members],
        "vocab": {int(t): s for t, s in zip(vocab.token_id, vocab.token) if int(t) in wanted},
    }
    return meta, data


def render_clusters_html(store: Store, clustering: str, before: int = 300, after: int = 0) -> str:
    """The viewer page for ``clustering`` (deterministic for a given store)."""
    if before < 0 or after < 0:
        raise InputError("--before and --after must be >= 0")
    meta, data = cluster_page_data(store, clustering, before, after)
    return render_page(TEMPLATE, meta, data)


def served(store: Store, clustering: str, options: dict) -> tuple[str, bytes]:
    """The viewer as ``serve`` answers ``/reports/clusters/<run id>``."""
    return "text/html", render_clusters_html(store, clustering).encode()
