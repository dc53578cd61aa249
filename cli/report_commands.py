"""Report commands: HTML pages to look at results."""

from __future__ import annotations

import click

from cli.options import pass_store


@click.group()
def report():
    """HTML reports."""


@report.command()
@click.argument("clustering")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default="clusters.html",
              show_default=True, help="Page to write.")
@click.option("--before", type=click.IntRange(0), default=300, show_default=True, help="Context tokens before the answer.")
@click.option("--after", type=click.IntRange(0), default=0, show_default=True, help="Context tokens after the answer.")
@pass_store
def clusters(ref, clustering, output, before, after):
    """A self-contained cluster viewer for CLUSTERING (a clustering run id)."""
    from pathlib import Path

    from quanta_db.reports.clusters_html import render_clusters_html

    page = render_clusters_html(ref.open(), clustering, before, after)
    Path(output).write_text(page, encoding="utf-8")
    click.echo(f"wrote {output} ({len(page.encode()) / 1024:.0f} KiB)")
