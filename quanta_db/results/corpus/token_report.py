"""``report tokens``: documents of a corpus with every token coloured by a value, one pane per value.

A pane is any query returning ``(doc_id, pos, value)`` for the corpus: the saved ``token_pane_*``
macros (raw loss, stepwise difference, model difference, few-shot − zero-shot) or the user's own
SQL (read-only, sandboxed like ``query``), so later kinds (head attributions, feature
activations) reuse the page. The page is self-contained (data gzip + base64 inside, text nodes
only), with diverging colours centred on 0 (or on the pane's median when all its values share a sign).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quanta_db.errors import InputError
from quanta_db.reports.page import render_page
from quanta_db.results.corpus.read import corpus_row, load_corpus_tokens
from quanta_db.store.store import Store

TEMPLATE = Path(__file__).resolve().parent / "templates" / "tokens.html"


@dataclass(frozen=True)
class Pane:
    label: str
    sql: str
    params: tuple = ()


def _model_step(text: str, option: str) -> tuple[str, int]:
    model, sep, step = text.rpartition("@")
    if not sep or not model or not step.strip().lstrip("-").isdigit():
        raise InputError(f"{option} expects MODEL@STEP, got {text!r}")
    return model, int(step)


def panes_from_options(corpus: str, loss=(), stepwise=(), model_difference=(), prompting=(), sql=()) -> list[Pane]:
    """Panes from the CLI's forms: MODEL@STEP (loss, stepwise, prompting), A,B@STEP (model difference),
    LABEL=SQL (any query returning doc_id, pos, value)."""
    panes = []
    for text in loss:
        model, step = _model_step(text, "--loss")
        panes.append(Pane(f"loss {model} step {step}", "SELECT * FROM token_pane_loss(?, ?, ?)", (corpus, model, step)))
    for text in stepwise:
        model, step = _model_step(text, "--stepwise")
        panes.append(Pane(f"stepwise difference {model} step {step}", "SELECT * FROM token_pane_stepwise(?, ?, ?)",
                          (corpus, model, step)))
    for text in model_difference:
        pair, step = _model_step(text, "--model-diff")
        a, sep, b = pair.partition(",")
        if not sep or not a or not b:
            raise InputError(f"--model-diff expects MODEL_A,MODEL_B@STEP, got {text!r}")
        panes.append(Pane(f"{a} − {b} step {step}", "SELECT * FROM token_pane_model_difference(?, ?, ?, ?)",
                          (corpus, a, b, step)))
    for text in prompting:
        model, step = _model_step(text, "--prompting")
        panes.append(Pane(f"few-shot − zero-shot {model} step {step}", "SELECT * FROM token_pane_prompting(?, ?, ?)",
                          (corpus, model, step)))
    for text in sql:
        label, sep, query = text.partition("=")
        if not sep or not label.strip() or not query.strip():
            raise InputError(f"--sql expects LABEL=SELECT doc_id, pos, value ..., got {text!r}")
        panes.append(Pane(label.strip(), query.strip().rstrip(";")))
    if not panes:
        raise InputError("choose at least one pane (--loss, --stepwise, --model-diff, --prompting or --sql)")
    return panes


def _pane_values(store: Store, pane: Pane, doc_ids: list[int]) -> dict[tuple[int, int], float]:
    from quanta_db.errors import QueryError

    try:  # the pane's own placeholders come first in the text, then the document list
        table = store.query_arrow(f"SELECT doc_id, pos, value FROM ({pane.sql}) AS pane WHERE list_contains(?, doc_id)",
                                  [*pane.params, doc_ids])
    except QueryError as error:
        raise InputError(f"pane {pane.label!r}: {error} (a pane is a query returning doc_id, pos, value)") from None
    return {(int(d), int(p)): float(v) for d, p, v in zip(table["doc_id"].to_pylist(), table["pos"].to_pylist(),
                                                            table["value"].to_pylist()) if v is not None}


def page_data(store: Store, corpus: str, panes: list[Pane], doc_ids: list[int] | None, n_docs: int) -> tuple[dict, dict]:
    tokenizer = corpus_row(store, corpus)["tokenizer"]  # an unknown corpus is one clear line
    all_ids, sequences = load_corpus_tokens(store, corpus)
    position = {int(d): i for i, d in enumerate(all_ids)}
    chosen = [int(d) for d in all_ids[:n_docs]] if doc_ids is None else list(doc_ids)
    unknown = [d for d in chosen if d not in position]
    if unknown:
        raise InputError(f"corpus {corpus!r} has no document(s) {', '.join(map(str, unknown[:5]))}")
    docs = [[d, sequences[position[d]].tolist()] for d in chosen]
    values = []
    for pane in panes:
        got = _pane_values(store, pane, chosen)
        if not got:
            raise InputError(f"pane {pane.label!r} has no value for documents {_listed(chosen)} of {corpus!r} "
                             "(are that model and step ingested for this corpus?)")
        values.append([[got.get((d, p)) for p in range(len(ids))] for d, ids in docs])
    vocab = store.read_fact("vocab", ["token_id", "token"], partition={"tokenizer": tokenizer}).to_pandas()
    wanted = {t for _, ids in docs for t in ids}
    data = {"docs": docs, "panes": [p.label for p in panes], "values": values,
            "centres": [_centre(v) for v in values],
            "vocab": {int(t): s for t, s in zip(vocab.token_id, vocab.token) if int(t) in wanted}}
    return {"corpus": corpus, "n_docs": len(docs)}, data


def _listed(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:5])) + (", ..." if len(ids) > 5 else "")


def _centre(pane_values: list[list]) -> float:
    flat = np.array([v for doc in pane_values for v in doc if v is not None])
    if not len(flat) or (flat.min() < 0 < flat.max()):
        return 0.0
    return float(np.median(flat))


def render_tokens_html(store: Store, corpus: str, panes: list[Pane], doc_ids: list[int] | None = None,
                       n_docs: int = 20) -> str:
    """The page (deterministic for a given store)."""
    if n_docs < 1:
        raise InputError("--docs must be at least 1")
    meta, data = page_data(store, corpus, panes, doc_ids, n_docs)
    return render_page(TEMPLATE, meta, data)
