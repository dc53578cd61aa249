"""The ``quanta-db`` command: one click group; commands live in modules by area."""

from __future__ import annotations

import click

from cli.errors import QuantaGroup
from cli.export_commands import export
from cli.ingest_commands import ingest
from cli.demo_command import demo
from cli.options import DEFAULT_STORE, StoreRef
from cli.report_commands import report
from cli.store_commands import gc, init, migrate, query, status, views
from quanta_db import __version__


@click.group(cls=QuantaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store", envvar="QUANTA_DB_STORE", default=DEFAULT_STORE, show_default=True, type=click.Path(file_okay=False),
    help="Store directory (catalog.duckdb + tables/); also QUANTA_DB_STORE.",
)
@click.version_option(__version__, prog_name="quanta-db")
@click.pass_context
def cli(ctx, store):
    """quanta-db: a database of language-model interpretability results.

    Ingest jobs compute results and commit them as Parquet registered in one DuckDB
    catalog; ask questions with `query`, saved analyses with `views`, papers with `export`.
    """
    ctx.obj = StoreRef(store)


for command in (init, migrate, status, gc, views, query, ingest, export, report, demo):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="quanta-db")
