"""CLI of the trajectories kind: ingest trajectories, report trajectories."""

from __future__ import annotations

import click

from cli.options import echo_result, force_option, pass_store


@click.command()
@click.option("--models", required=True, help="Comma-separated model names (at least two), e.g. sizes of one family.")
@click.option("--corpus", required=True, help="Corpus (e.g. a context set) whose token losses form the columns.")
@click.option("--steps", help="Comma-separated steps every model must have [default: each model's steps with losses].")
@click.option("--tokens", help="SQL returning doc_id, pos (and optionally corpus): only these tokens, e.g. a filter "
                               "or a cluster.")
@click.option("--method", type=click.Choice(["pca", "sparse", "hybrid"]), default="pca", show_default=True,
              help="hybrid: PCA, then sparse PCA of the residual.")
@click.option("--components", type=click.IntRange(1), default=10, show_default=True,
              help="Components (hybrid: the PCA ones).")
@click.option("--sparse-components", type=click.IntRange(1), help="Sparse components of a hybrid [default: --components].")
@click.option("--alpha", type=click.FloatRange(0), default=1.0, show_default=True, help="Sparse PCA L1 weight.")
@click.option("--ridge-alpha", type=click.FloatRange(0), default=0.01, show_default=True,
              help="Ridge of the sparse scores (sklearn's transform).")
@click.option("--max-iter", type=click.IntRange(1), default=1000, show_default=True)
@click.option("--tol", type=click.FloatRange(0), default=1e-6, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--scale", is_flag=True, help="Standardise each token column before fitting.")
@click.option("--smooth", default="1,2", show_default=True,
              help="EARLY,LATE Gaussian sigmas (in checkpoints) of the score curves, linear in between.")
@click.option("--device", default="auto", show_default=True, help="cuda, cpu or auto.")
@force_option
@pass_store
def trajectories(ref, models, corpus, steps, tokens, method, components, sparse_components, alpha, ridge_alpha,
                 max_iter, tol, seed, scale, smooth, device, force):
    """Joint PCA / sparse PCA / hybrid of several models' per-token losses across checkpoints."""
    from quanta_db.results.trajectories.job import ingest_trajectories, parse_smooth
    from quanta_db.runtime.models import parse_steps

    parsed = parse_steps(steps)
    echo_result(ingest_trajectories(
        ref.open(), [m.strip() for m in models.split(",") if m.strip()], corpus,
        steps=None if parsed in (None, "all") else parsed, tokens=tokens, method=method, components=components,
        sparse_components=sparse_components, alpha=alpha, ridge_alpha=ridge_alpha, max_iter=max_iter, tol=tol,
        seed=seed, scale=scale, smooth=parse_smooth(smooth), device=device, force=force))


@click.command("trajectories")
@click.argument("fit")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, writable=True), default="trajectories",
              show_default=True, help="Folder for index.html and the PNG figures.")
@pass_store
def trajectories_report(ref, fit, out_dir):
    """Interactive page (PC pairs, smoothed curves, osculating circles, events, top tokens) and PNGs of a fit."""
    from quanta_db.results.trajectories.report import write_report

    for path in write_report(ref.open(), fit, out_dir):
        click.echo(f"wrote {path}")


INGEST = [trajectories]
REPORT = [trajectories_report]
