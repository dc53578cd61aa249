"""CLI of the quanta kind: ingest clusters, report clusters."""

from __future__ import annotations

import click

from cli.options import device_option, dtype_option, echo_result, force_option, pass_store, progress_option


@click.command()
@click.option("--model", help="Model name in the store (its losses must be ingested).")
@click.option("--step", type=int, help="Training step of the model.")
@click.option("--corpus", help="Corpus whose tokens are clustered.")
@click.option("--loss-below", type=float, default=0.1, show_default=True, help="Keep tokens with loss below this.")
@click.option("--loss-unit", type=click.Choice(["nats", "bits"]), default="nats", show_default=True)
@click.option("--exclude-filter", help="Drop tokens where this filter is true (e.g. trigram).")
@click.option("--n-tokens", type=click.IntRange(2), default=10000, show_default=True)
@click.option("--skip", type=click.IntRange(1), default=50, show_default=True, help="Take every skip-th candidate.")
@click.option("--n-clusters", type=click.IntRange(2), default=400, show_default=True)
@click.option("--n-init", type=click.IntRange(1), default=30, show_default=True, help="k-means restarts.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sketch", type=click.IntRange(16), help="CountSketch the gradients to this many dimensions.")
@dtype_option("--grad-dtype", help="Storage of gradient blocks (products accumulate in float32).")
@click.option("--grad-memory-gb", type=float, help="Memory for gradient blocks [default: 70% of free GPU, 4 GB on CPU].")
@click.option("--from-similarity", help="Recluster the similarity matrix of this run instead.")
@device_option
@force_option
@progress_option
@pass_store
def clusters(ref, model, step, corpus, loss_below, loss_unit, exclude_filter, n_tokens, skip, n_clusters, n_init,
             seed, sketch, grad_dtype, grad_memory_gb, from_similarity, device, force, progress):
    """Quanta: cluster low-loss tokens by the cosine similarity of their loss gradients."""
    from quanta_db.results.quanta.job import ingest_clusters

    echo_result(ingest_clusters(
        ref.open(), model, step, corpus, loss_below=loss_below, loss_unit=loss_unit, exclude_filter=exclude_filter,
        n_tokens=n_tokens, skip=skip, n_clusters=n_clusters, n_init=n_init, seed=seed, device=device, sketch=sketch,
        grad_dtype=grad_dtype, grad_memory_gb=grad_memory_gb, from_similarity=from_similarity, force=force,
        progress=progress,
    ))


@click.command("clusters")
@click.argument("clustering")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default="clusters.html",
              show_default=True, help="Page to write.")
@click.option("--before", type=click.IntRange(0), default=300, show_default=True, help="Context tokens before the answer.")
@click.option("--after", type=click.IntRange(0), default=0, show_default=True, help="Context tokens after the answer.")
@pass_store
def clusters_report(ref, clustering, output, before, after):
    """A self-contained cluster viewer for CLUSTERING (a clustering run id)."""
    from pathlib import Path

    from quanta_db.results.quanta.viewer import render_clusters_html

    page = render_clusters_html(ref.open(), clustering, before, after)
    Path(output).write_text(page, encoding="utf-8")
    click.echo(f"wrote {output} ({len(page.encode()) / 1024:.0f} KiB)")


INGEST = [clusters]
REPORT = [clusters_report]
