"""``quanta-db demo``: the README's main job on the embedded default."""

from __future__ import annotations

import click

from quanta_db.cli.options import StoreRef, pass_store, progress_option
from quanta_db.reports.formats import render


@click.command()
@click.option("--store", "store_path", type=click.Path(file_okay=False), help="Store to build (overrides the global --store).")
@progress_option
@pass_store
def demo(ref, store_path, progress):
    """Build a corpus, DM-math problems and two tiny Pythia-style models offline; ingest; cluster; train, ingest and
    pair SAEs; fit PCA/ICA/NMF baselines; measure activation geometry; fit loss trajectories; show analyses."""
    from quanta_db.demo.run import (
        ANALYSES,
        run_demo,
        write_feature_reports,
        write_heatmap,
        write_tokens_page,
        write_trajectory_report,
        write_viewer,
    )

    path = StoreRef(store_path).path if store_path else ref.path
    store = run_demo(path, echo=click.echo, progress=progress)
    for name, sql in ANALYSES.items():
        click.echo(f"\n== {name}   ({sql})")
        click.echo(render(store.query_arrow(sql), "table"), nl=False)
    click.echo(f"\ncluster viewer: {write_viewer(store, path)}")
    for report in write_feature_reports(store, path):
        click.echo(f"feature report: {report}")
    click.echo(f"SVCCA heat map: {write_heatmap(store, path)}")
    click.echo(f"trajectories: {write_trajectory_report(store, path)}")
    click.echo(f"token panes: {write_tokens_page(store, path, [r['model'] for r in store.catalog_rows('models')])}")
    click.echo(f"store: {store.root}\ntry: quanta-db --store {path} views\nserve it: quanta-db --store {path} serve --open")
