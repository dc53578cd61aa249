"""``ingest trajectories``: fit PCA / sparse PCA / hybrid to the joint loss matrix of several
models across their checkpoints, and store components, scores, loadings and dynamics events."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pyarrow as pa
import torch

from quanta_db.job import Ingest, JobResult, committed
from quanta_db.params import ParameterError, job_function
from quanta_db.results.corpus.read import corpus_row
from quanta_db.results.trajectories import dynamics
from quanta_db.results.trajectories import fit as fits
from quanta_db.results.trajectories.matrix import LossMatrix, build_matrix, matrix_rows
from quanta_db.results.trajectories.params import TrajectoryParams
from quanta_db.runtime.device import resolve_device
from quanta_db.store.store import Store

EVENT_COMPONENTS = 3  # dynamics events in the planes of every pair of the first three components


def _ingest_trajectories(store: Store, params: TrajectoryParams) -> JobResult:
    """Fit ``method`` with ``components`` (hybrid: PCA components, then ``sparse_components``
    sparse ones of the residual) to the (model, step) × token loss matrix of ``corpus``."""
    models, corpus, tokens, method, components = (list(params.models), params.corpus, params.tokens, params.method,
                                                  params.components)
    steps = list(params.steps) if params.steps is not None else None
    sparse_components, scale, smooth = params.sparse_components, params.scale, params.smooth
    corpus_row(store, corpus)
    rows = matrix_rows(store, models, corpus, steps)
    # The resolved rows are part of the identity: a checkpoint ingested later makes the same command a new fit.
    identity = params.identity(rows=[f"{m}@{s}" for m, s in rows])
    job = Ingest(store, "trajectories", identity, params.force)
    if job.previous:
        return job.skipped(f"fit {job.previous} has these parameters")
    store.see(job.seen, "corpora", is_input=True, corpus=corpus)
    for model in models:
        store.see(job.seen, "token_losses", is_input=True, model=model, corpus=corpus)
    matrix = build_matrix(store, rows, corpus, tokens)
    _check_components(len(matrix.rows), matrix.values.shape[1], method, components, sparse_components)
    torch_device = resolve_device(params.device)
    result = _fit(matrix, method, components, sparse_components or components, scale, torch_device,
                  alpha=params.alpha, ridge_alpha=params.ridge_alpha, max_iter=params.max_iter, tol=params.tol,
                  seed=params.seed)
    result = fits.orient(result, _reference_row(store, matrix.rows))
    short = [m for m, span in _model_spans(matrix.rows).items() if span.stop - span.start < dynamics.MIN_EVENT_POINTS]
    with job.begin(device=str(torch_device)) as run:
        smoothed = _smoothed_scores(matrix.rows, result.scores, smooth)
        _write(run, matrix, corpus, result, smoothed)
        run.upsert("trajectory_fits", [{
            "fit": run.run_id, "corpus": corpus, "models": list(models), "method": method,
            "n_rows": len(matrix.rows), "n_tokens": matrix.values.shape[1], "n_dropped": matrix.n_dropped,
            "n_components": len(result.methods), "alpha": identity["alpha"], "ridge_alpha": identity["ridge_alpha"],
            "scaled": scale, "smooth_early": smooth[0], "smooth_late": smooth[1],
            "n_iter": result.n_iter if method != "pca" else None,
            "cost": result.cost if method != "pca" else None, "models_without_events": short,
            "run_id": run.run_id}], key=["fit"])
        written = run.commit()
    dropped = (f"; {matrix.n_dropped:,} tokens dropped (missing in at least one row)" if matrix.n_dropped else "")
    outside = f"; {matrix.n_outside_subset:,} outside --tokens" if matrix.n_outside_subset else ""
    outside += (f"; no curvature events for {', '.join(short)} (fewer than {dynamics.MIN_EVENT_POINTS} checkpoints)"
                if short else "")
    ratios = ", ".join(f"{r:.3f}" for r in result.explained_variance_ratio[:3])
    return committed(run, written, f"fit {run.run_id} ({method}): {len(matrix.rows)} rows x "
                     f"{matrix.values.shape[1]:,} tokens{dropped}{outside}; explained variance ratio {ratios}, ...")


ingest_trajectories = job_function(TrajectoryParams, _ingest_trajectories)


def _check_components(n_rows: int, n_tokens: int, method: str, components: int, sparse_components: int | None) -> None:
    """A centred matrix of n rows has at most n − 1 (and at most n_tokens) components; asking for
    more would store components that are zero by construction."""
    most = max(min(n_rows - 1, n_tokens), 0)
    wanted = components + (sparse_components or components if method == "hybrid" else 0)
    if wanted > most:
        asked = f"{components} + {wanted - components} sparse" if method == "hybrid" else f"{components}"
        raise ParameterError("components", f"{asked}: {wanted} components asked of {n_rows} rows x {n_tokens} tokens, "
                             f"and a centred matrix has at most {most}")


def _fit(matrix: LossMatrix, method: str, components: int, sparse_components: int, scale: bool, device,
         **sparse_options) -> fits.Fit:
    x = torch.as_tensor(matrix.values, device=device)
    x = x - x.mean(dim=0, keepdim=True)
    if scale:
        std = x.std(dim=0, keepdim=True)
        x = x / torch.where(std > 0, std, torch.ones_like(std))
    if method == "pca":
        return fits.pca(x, components)
    if method == "sparse":
        return fits.sparse_pca(x, components, **sparse_options)
    return fits.hybrid(x, components, sparse_components, **sparse_options)


def _reference_row(store: Store, rows: list[tuple[str, int]]) -> int:
    """The first checkpoint of the largest model (most parameters; the last listed on a tie)."""
    sizes = {}
    for model in dict.fromkeys(m for m, _ in rows):  # one catalog read per model, not per checkpoint
        found = store.catalog_rows("models", model=model)
        sizes[model] = (found[0]["n_params"] or 0) if found else 0
    largest = max(reversed(list(sizes)), key=lambda m: sizes[m])
    return next(i for i, (model, _) in enumerate(rows) if model == largest)


def _model_spans(rows: list[tuple[str, int]]) -> dict[str, slice]:
    spans: dict[str, list[int]] = {}
    for i, (model, _) in enumerate(rows):
        spans.setdefault(model, []).append(i)
    return {model: slice(ix[0], ix[-1] + 1) for model, ix in spans.items()}


def _smoothed_scores(rows, scores: np.ndarray, smooth: tuple[float, float]) -> np.ndarray:
    out = np.empty_like(scores)
    for span in _model_spans(rows).values():
        out[span] = dynamics.smooth(scores[span], *smooth)
    return out


def _write(run, matrix: LossMatrix, corpus: str, result: fits.Fit, smoothed: np.ndarray) -> None:
    fit_id, k = run.run_id, len(result.methods)
    number = np.arange(1, k + 1, dtype=np.int32)
    run.write("trajectory_components", pa.table({
        "fit": pa.repeat(fit_id, k), "component": number, "method": result.methods,
        "explained_variance": result.explained_variance.astype(np.float64),
        "explained_variance_ratio": result.explained_variance_ratio.astype(np.float64),
        "sparsity": result.sparsity.astype(np.float64)}))
    n_rows = len(matrix.rows)
    run.write("trajectory_scores", pa.table({
        "fit": pa.repeat(fit_id, n_rows * k), "model": np.repeat([m for m, _ in matrix.rows], k),
        "step": np.repeat([s for _, s in matrix.rows], k).astype(np.int64), "component": np.tile(number, n_rows),
        "score": result.scores.ravel().astype(np.float64), "score_smoothed": smoothed.ravel().astype(np.float64)}))
    component, column = np.nonzero(result.components)
    run.write("trajectory_loadings", pa.table({
        "fit": pa.repeat(fit_id, len(column)), "component": number[component], "corpus": pa.repeat(corpus, len(column)),
        "doc_id": matrix.doc_id[column], "pos": matrix.pos[column],
        "loading": result.components[component, column].astype(np.float32)}))
    run.write("trajectory_events", pa.Table.from_pylist(_events(fit_id, matrix.rows, smoothed),
                                                        schema=_events_schema()))


def _events_schema() -> pa.Schema:
    from quanta_db.store.registry import fact_table

    return fact_table("trajectory_events").schema


def _events(fit_id: str, rows, smoothed: np.ndarray) -> list[dict]:
    found = []
    for model, span in _model_spans(rows).items():
        steps = [step for _, step in rows[span]]
        for a, b in combinations(range(min(EVENT_COMPONENTS, smoothed.shape[1])), 2):
            for index, event, value in dynamics.events(smoothed[span][:, [a, b]]):
                found.append({"fit": fit_id, "model": model, "step": steps[index], "pc_x": a + 1, "pc_y": b + 1,
                              "kind": event, "value": value})
    return found
