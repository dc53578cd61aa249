"""The ``quanta-db`` command: one click group. Store commands live in ``store_commands``;
each result kind's ``ingest`` and ``report`` commands come from its module in ``cli/kinds/``."""

from __future__ import annotations

import importlib
import pkgutil

import click

from cli import kinds
from cli.demo_command import demo
from cli.errors import QuantaGroup
from cli.export_commands import export
from cli.options import DEFAULT_STORE, PROCESS, StoreRef
from cli.serve_command import serve
from cli.store_commands import gc, init, migrate, query, status, views
from cli.tokens_report import tokens_report
from quanta_db.version import __version__


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


@click.group()
def ingest():
    """Compute results and commit them to the store as one run."""


@click.group()
def report():
    """HTML reports."""


def kind_modules() -> list:
    """The CLI module of every result kind (``cli/kinds/*.py``), by name."""
    return [importlib.import_module(f"{kinds.__name__}.{m.name}") for m in sorted(pkgutil.iter_modules(kinds.__path__),
                                                                                  key=lambda m: m.name)]


for module in kind_modules():
    for command in module.INGEST:
        ingest.add_command(command)
    for command in module.REPORT:
        report.add_command(command)
report.add_command(tokens_report)  # not of one kind: any value per token

for command in (init, migrate, status, gc, views, query, ingest, export, report, demo, serve):
    cli.add_command(command)


def main() -> None:
    PROCESS["owned"] = True
    cli(prog_name="quanta-db")
