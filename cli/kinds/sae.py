"""CLI of the sae kind: ingest sae."""

from __future__ import annotations

import click

from quanta_db.cli.options import pass_store
from quanta_db.cli.params import job_command
from quanta_db.results.sae.params import SaeParams

sae = job_command("sae", SaeParams, "quanta_db.results.sae.job:ingest_sae", plan="quanta_db.results.sae.job:sae_plan")


@click.command("features")
@click.argument("sae_name", metavar="SAE")
@click.option("--corpus", help="Corpus the SAE was run on (needed when there are several).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default="features.html",
              show_default=True, help="Page to write.")
@click.option("--max-features", type=click.IntRange(1), default=1000, show_default=True,
              help="Features with examples, histogram and logit effects (the most active).")
@click.option("--before", type=click.IntRange(0), default=24, show_default=True, help="Context tokens before each example.")
@click.option("--after", type=click.IntRange(0), default=4, show_default=True, help="Context tokens after each example.")
@pass_store
def features_report(ref, sae_name, corpus, output, max_features, before, after):
    """A self-contained feature report of SAE: sortable list, stats, histogram, logit effects, examples."""
    from pathlib import Path

    from quanta_db.results.sae.report import render_features_html

    page = render_features_html(ref.open(), sae_name, corpus, max_features, before, after)
    Path(output).write_text(page, encoding="utf-8")
    click.echo(f"wrote {output} ({len(page.encode()) / 1024:.0f} KiB)")


INGEST = [sae]
REPORT = [features_report]
