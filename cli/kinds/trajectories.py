"""CLI of the trajectories kind: ingest trajectories, report trajectories."""

from __future__ import annotations

import click

from quanta_db.cli.options import pass_store
from quanta_db.cli.params import job_command
from quanta_db.results.trajectories.params import TrajectoryParams

trajectories = job_command("trajectories", TrajectoryParams, "quanta_db.results.trajectories.job:ingest_trajectories")


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
