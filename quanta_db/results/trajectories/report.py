"""``report trajectories FIT -o DIR``: an interactive page and PNG figures of a trajectory fit.

The page (``DIR/index.html``) is self-contained like the other reports: the fit's scores,
events, explained variance and each component's top-loading tokens (with their context as token
ids and the vocabulary they use) travel gzip-compressed and base64-encoded inside it and are
drawn as SVG in the browser with text nodes only — no CDN, nothing a token contains becomes markup.
The PNGs (matplotlib, offline) are the explained-variance bars and the trajectories in the planes
of every pair of the first three components, for papers.
"""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import numpy as np

from quanta_db.errors import InputError
from quanta_db.reports.page import render_page
from quanta_db.results.corpus.read import load_corpus_tokens
from quanta_db.store.store import Store

TEMPLATE = Path(__file__).resolve().parent / "templates" / "trajectories.html"
TOP_TOKENS = 12
CONTEXT_TOKENS = 16


def page_data(store: Store, fit: str, top_tokens: int = TOP_TOKENS) -> tuple[dict, dict]:
    """(meta, data) of the page of ``fit``."""
    rows = store.catalog_rows("trajectory_fits", fit=fit)
    if not rows:
        raise InputError(f"unknown trajectory fit {fit!r} (see `quanta-db query \"SELECT * FROM trajectory_fits\"`)")
    info = rows[0]
    components = store.read_fact("trajectory_components", partition={"fit": fit}).to_pandas().sort_values("component")
    scores = store.read_fact("trajectory_scores", partition={"fit": fit}).to_pandas()
    events = store.read_fact("trajectory_events", partition={"fit": fit}).to_pandas()
    models = list(info["models"])
    sizes = {m: (store.catalog_rows("models", model=m) or [{}])[0].get("n_params") or 0 for m in models}
    curves = {}
    for model in models:
        mine = scores[scores.model == model]
        raw = mine.pivot(index="step", columns="component", values="score").sort_index()
        smooth = mine.pivot(index="step", columns="component", values="score_smoothed").sort_index()
        curves[model] = {"steps": raw.index.astype(int).tolist(), "scores": np.round(raw.to_numpy(), 6).tolist(),
                         "smoothed": np.round(smooth.to_numpy(), 6).tolist(), "n_params": int(sizes[model])}
    tokens, vocab_ids = _top_tokens(store, fit, info["corpus"], components.component.tolist(), top_tokens)
    tokenizer = store.catalog_rows("corpora", corpus=info["corpus"])[0]["tokenizer"]
    vocab = store.read_fact("vocab", ["token_id", "token"], partition={"tokenizer": tokenizer}).to_pandas()
    meta = {k: info[k] for k in ("fit", "corpus", "method", "n_rows", "n_tokens", "n_dropped", "smooth_early",
                                 "smooth_late")}
    meta["models"] = ", ".join(models)
    data = {
        "models": models, "curves": curves,
        "components": [[int(r.component), r.method, round(float(r.explained_variance_ratio), 6),
                        round(float(r.sparsity), 4)] for r in components.itertuples()],
        "events": [[r.model, int(r.step), int(r.pc_x), int(r.pc_y), r.kind, round(float(r.value), 6)]
                   for r in events.itertuples()],
        "tokens": tokens,
        "vocab": {int(t): s for t, s in zip(vocab.token_id, vocab.token) if int(t) in vocab_ids},
    }
    return meta, data


def _top_tokens(store: Store, fit: str, corpus: str, components: list[int], n: int) -> tuple[dict, set]:
    """Per component its ``n`` largest |loading| tokens: [doc_id, pos, loading, context ids (token last)]."""
    if n < 1:
        return {}, set()
    loadings = store.read_fact("trajectory_loadings", partition={"fit": fit}).to_pandas()
    doc_ids, sequences = load_corpus_tokens(store, corpus)
    index_of = {int(d): i for i, d in enumerate(doc_ids)}
    out, wanted = {}, set()
    for component in components:
        mine = loadings[loadings.component == component]
        top = mine.iloc[np.lexsort((mine.pos, mine.doc_id, -mine.loading.abs().to_numpy()))[:n]]
        rows = []
        for r in top.itertuples():
            ids = sequences[index_of[int(r.doc_id)]][max(0, int(r.pos) - CONTEXT_TOKENS):int(r.pos) + 1].tolist()
            wanted.update(ids)
            rows.append([int(r.doc_id), int(r.pos), round(float(r.loading), 6), ids])
        out[str(component)] = rows
    return out, wanted


def render_trajectories_html(store: Store, fit: str) -> str:
    """The page (deterministic for a given store)."""
    meta, data = page_data(store, fit)
    return render_page(TEMPLATE, meta, data)


def write_figures(store: Store, fit: str, out_dir: Path) -> list[Path]:
    """Explained-variance bars and the smoothed trajectories in each plane of the first three
    components (events marked), as PNGs in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    meta, data = page_data(store, fit, top_tokens=0)
    paths = [out_dir / "explained-variance.png", out_dir / "trajectories.png"]
    figure, axis = plt.subplots(figsize=(5, 3))
    numbers = [c[0] for c in data["components"]]
    axis.bar(numbers, [c[2] for c in data["components"]],
             color=["#5c6bc0" if c[1] == "pca" else "#ef6c00" for c in data["components"]])
    axis.set_xlabel("component")
    axis.set_ylabel("explained variance ratio")
    axis.set_title(f"{meta['method']} fit on {meta['corpus']}")
    figure.savefig(paths[0], dpi=150, bbox_inches="tight")
    plt.close(figure)
    pairs = list(combinations(range(min(3, len(numbers))), 2)) or [(0, 0)]
    figure, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4), squeeze=False)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(data["models"])))
    order = sorted(data["models"], key=lambda m: data["curves"][m]["n_params"])
    for axis, (a, b) in zip(axes[0], pairs):
        for model in data["models"]:
            curve = np.array(data["curves"][model]["smoothed"])
            colour = colours[order.index(model)]
            axis.plot(curve[:, a], curve[:, b], color=colour, label=model, linewidth=1.5)
            axis.scatter(np.array(data["curves"][model]["scores"])[:, a], np.array(data["curves"][model]["scores"])[:, b],
                         color=colour, s=6, alpha=0.5)
            steps = data["curves"][model]["steps"]
            for m, step, x, y, event, _ in data["events"]:
                if m == model and (x, y) == (a + 1, b + 1):
                    i = steps.index(step)
                    axis.scatter(curve[i, a], curve[i, b], marker="^" if event == "curvature_max" else "x", color="black",
                                 s=25, zorder=3)
        axis.set_xlabel(f"PC{a + 1}")
        axis.set_ylabel(f"PC{b + 1}")
    axes[0][0].legend(fontsize=7)
    figure.savefig(paths[1], dpi=150, bbox_inches="tight")
    plt.close(figure)
    return paths


def write_report(store: Store, fit: str, out_dir: str | Path) -> list[Path]:
    """``out_dir/index.html`` and the PNG figures."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    page.write_text(render_trajectories_html(store, fit), encoding="utf-8")
    return [page, *write_figures(store, fit, out)]


def served(store: Store, fit: str, options: dict) -> tuple[str, bytes]:
    """The trajectories page as ``serve`` answers ``/reports/trajectories/<run id>``."""
    return "text/html", render_trajectories_html(store, fit).encode()
