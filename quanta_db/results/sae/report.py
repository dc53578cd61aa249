"""The feature report: one self-contained HTML page per SAE and corpus.

Like the cluster viewer, the data (feature statistics, histograms, logit effects and examples
with their context as token ids, plus the vocabulary they use) travels gzip-compressed and
base64-encoded inside the page and is rendered in the browser with text nodes only.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc

from quanta_db.errors import InputError
from quanta_db.reports.page import render_page
from quanta_db.results.corpus.read import load_corpus_tokens
from quanta_db.store.store import Store

TEMPLATE = Path(__file__).resolve().parent / "templates" / "features.html"


def feature_page_data(store: Store, sae: str, corpus: str | None, max_features: int, before: int,
                      after: int) -> tuple[dict, dict]:
    """(meta, data) of the report of ``sae`` on ``corpus`` (the only one if None)."""
    rows = store.catalog_rows("saes", sae=sae)
    if not rows:
        raise InputError(f"unknown SAE {sae!r} (see `quanta-db query \"SELECT sae FROM saes\"`)")
    features = store.read_fact("sae_features", partition={"sae": sae})
    corpora = sorted(set(features.column("corpus").to_pylist()))
    if corpus is None and len(corpora) != 1:
        raise InputError(f"SAE {sae!r} was run on {len(corpora)} corpora ({', '.join(corpora)}); pass --corpus")
    corpus = corpus or corpora[0]
    if corpus not in corpora:
        raise InputError(f"SAE {sae!r} was not run on corpus {corpus!r}")
    stats = features.filter(pc.equal(features.column("corpus"), corpus)).sort_by("feature").to_pandas()
    order = stats.sort_values(["n_active", "feature"], ascending=[False, True]).feature.tolist()
    detailed = set(order[:max_features])
    examples = _of(store, "feature_examples", sae, corpus, detailed)
    doc_ids, sequences = load_corpus_tokens(store, corpus)
    index_of = {int(d): i for i, d in enumerate(doc_ids)}
    contexts, wanted = [], set()
    for row in examples.itertuples():
        ids = sequences[index_of[int(row.doc_id)]]
        start = max(0, int(row.pos) - before)
        window = ids[start:int(row.pos) + after + 1].tolist()
        wanted.update(window)
        contexts.append([row.feature, row.kind, int(row.rank), round(float(row.activation), 5), int(row.pos) - start,
                         window])
    logits = store.read_fact("feature_logits", partition={"sae": sae}).to_pandas()
    logits = logits[logits.feature.isin(detailed)].sort_values(["feature", "direction", "rank"])
    wanted.update(logits.token_id.astype(int).tolist())
    histograms = _of(store, "feature_histograms", sae, corpus, detailed)
    tokenizer = store.catalog_rows("corpora", corpus=corpus)[0]["tokenizer"]
    vocab = store.read_fact("vocab", ["token_id", "token"], partition={"tokenizer": tokenizer}).to_pandas()
    meta = {k: rows[0][k] for k in ("sae", "model", "step", "hook_name", "d_sae", "architecture")}
    meta.update(corpus=corpus, n_tokens=int(stats.n_tokens.iloc[0]) if len(stats) else 0, n_detailed=len(detailed))
    data = {
        "n_active": stats.n_active.astype(int).tolist(), "density": stats.density.round(8).tolist(),
        "max_act": stats.max_act.astype(float).round(5).tolist(),
        "mean_act_active": stats.mean_act_active.round(5).tolist(), "dead": stats.dead.astype(bool).tolist(),
        "detailed": sorted(detailed), "examples": contexts,
        "logits": [[int(r.feature), r.direction, int(r.token_id), round(float(r.value), 4)] for r in logits.itertuples()],
        "histograms": [[int(r.feature), round(float(r.lower), 6), round(float(r.upper), 6), int(r.count)]
                       for r in histograms.sort_values(["feature", "bin"]).itertuples()],
        "vocab": {int(t): s for t, s in zip(vocab.token_id, vocab.token) if int(t) in wanted},
    }
    return meta, data


def _of(store: Store, table: str, sae: str, corpus: str, features: set):
    frame = store.read_fact(table, partition={"sae": sae}).to_pandas()
    return frame[(frame.corpus == corpus) & frame.feature.isin(features)]


def render_features_html(store: Store, sae: str, corpus: str | None = None, max_features: int = 1000,
                         before: int = 24, after: int = 4) -> str:
    """The report page (deterministic for a given store)."""
    if max_features < 1 or before < 0 or after < 0:
        raise InputError("--max-features must be >= 1, --before and --after >= 0")
    meta, data = feature_page_data(store, sae, corpus, max_features, before, after)
    return render_page(TEMPLATE, meta, data)



def served(store: Store, sae: str, options: dict) -> tuple[str, bytes]:
    """The feature report as ``serve`` answers ``/reports/features/<sae>``."""
    return "text/html", render_features_html(store, sae).encode()
