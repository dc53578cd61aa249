"""CLI of the quanta kind: ingest clusters, ingest recluster, report clusters."""

from __future__ import annotations

import click

from quanta_db.cli.options import StoreRef, echo_result, pass_store
from quanta_db.cli.params import job_command
from quanta_db.results.quanta.params import ClusterParams, ReclusterParams


def _clusters_command() -> click.Command:
    """``ingest clusters``, generated from its parameters, which also takes ``--from-similarity RUN``
    (the spelling of ``ingest recluster`` before the two jobs were split)."""
    command = job_command("clusters", ClusterParams, "quanta_db.results.quanta.job:ingest_clusters",
                          plan="quanta_db.results.quanta.job:clusters_plan")
    inner = command.callback
    for option in command.params:
        if option.name in ("model", "step", "corpus"):
            option.required = False

    @click.pass_context
    def callback(ctx, from_similarity, **values):
        if from_similarity is None:
            missing = [f"--{name}" for name in ("model", "step", "corpus") if values[name] is None]
            if missing:
                raise click.UsageError(f"{', '.join(missing)} required (or --from-similarity RUN)")
            return ctx.invoke(inner, **values)
        ref = ctx.find_object(StoreRef)
        params = ReclusterParams(from_similarity, values["n_clusters"], values["n_init"], values["seed"],
                                 force=values["force"])
        from quanta_db.results.quanta.job import ingest_recluster

        echo_result(ingest_recluster(ref.open(), params))

    command.callback = callback
    command.params.append(click.Option(["--from-similarity"], help="Recluster the similarity matrix of this run "
                                       "instead (same as `ingest recluster`)."))
    return command


clusters = _clusters_command()
recluster = job_command("recluster", ReclusterParams, "quanta_db.results.quanta.job:ingest_recluster")


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


INGEST = [clusters, recluster]
REPORT = [clusters_report]
