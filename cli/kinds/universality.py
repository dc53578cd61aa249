"""CLI of the universality kind: ingest feature-pairs, feature-matches, metrics; report heatmap."""

from __future__ import annotations

import click

from quanta_db.cli.options import pass_store
from quanta_db.cli.params import job_command
from quanta_db.results.universality.params import (
    BASELINES,
    METRIC_NAMES,
    FeatureMatchParams,
    FeaturePairParams,
    MetricParams,
)

JOBS = "quanta_db.results.universality.job"


feature_pairs = job_command("feature-pairs", FeaturePairParams, f"{JOBS}:ingest_feature_pairs",
                            plan=f"{JOBS}:feature_pairs_plan")
feature_matches = job_command("feature-matches", FeatureMatchParams, f"{JOBS}:ingest_feature_matches")
metrics = job_command("metrics", MetricParams, f"{JOBS}:ingest_metrics")


@click.command("heatmap")
@click.option("--metric", required=True, type=click.Choice(METRIC_NAMES))
@click.option("--baseline", type=click.Choice(BASELINES), default=BASELINES[0],
              show_default=True, help="Null whose p-values mark the cells.")
@click.option("--alpha", type=click.FloatRange(0, 1), default=0.05, show_default=True, help="Star cells with p below this.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default="heatmap.png",
              show_default=True, help="PNG to write.")
@pass_store
def heatmap_report(ref, metric, baseline, alpha, output):
    """PNG heat map of a similarity metric, layer by layer, one panel per model pair (data: layer_heatmap)."""
    from quanta_db.results.universality.heatmap import heatmap_data, render_heatmap_png

    panels = render_heatmap_png(heatmap_data(ref.open(), metric, baseline), output, metric, alpha)
    click.echo(f"wrote {output} ({panels} model pair{'s' if panels != 1 else ''})")


INGEST = [feature_pairs, feature_matches, metrics]
REPORT = [heatmap_report]
