"""The ``quanta-db`` command: one click group. Store commands live in ``store_commands``;
each result kind's ``ingest`` and ``report`` commands come from the CLI module its declaration
names (:mod:`quanta_db.kinds`), looked up when a command is asked for."""

from __future__ import annotations

import importlib

import click

from quanta_db.cli.demo_command import demo
from quanta_db.cli.errors import QuantaGroup
from quanta_db.cli.export_commands import export
from quanta_db.cli.options import DEFAULT_STORE, PROCESS, StoreRef
from quanta_db.cli.serve_command import serve
from quanta_db.cli.slurm_command import slurm
from quanta_db.cli.store_commands import commit, gc, init, migrate, query, status, views
from quanta_db.cli.tokens_report import tokens_report
from quanta_db.version import __version__


@click.group(cls=QuantaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store", envvar="QUANTA_DB_STORE", default=DEFAULT_STORE, show_default=True, type=click.Path(file_okay=False),
    help="Store directory (its catalog + tables/); also QUANTA_DB_STORE.",
)
@click.version_option(__version__, prog_name="quanta-db")
@click.pass_context
def cli(ctx, store):
    """quanta-db: a database of language-model interpretability results.

    Ingest jobs compute results and commit them as Parquet registered in one DuckDB
    catalog; ask questions with `query`, saved analyses with `views`, papers with `export`.
    """
    ctx.obj = StoreRef(store)


class KindCommands(click.Group):
    """A group whose commands are its own plus those every result kind's CLI module lists under
    ``listing`` (``INGEST`` or ``REPORT``)."""

    def __init__(self, *args, listing: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.listing = listing

    def _declared(self) -> dict[str, click.Command]:
        from quanta_db.kinds import result_kinds

        found = {}
        for kind in result_kinds().values():
            if kind.commands:
                for command in getattr(importlib.import_module(kind.commands), self.listing):
                    found[command.name] = command
        return found

    def list_commands(self, ctx) -> list[str]:
        return sorted({*self.commands, *self._declared()})

    def get_command(self, ctx, name):
        return self.commands.get(name) or self._declared().get(name)


@click.group(cls=KindCommands, listing="INGEST")
def ingest():
    """Compute results and commit them to the store as one run."""


@click.group(cls=KindCommands, listing="REPORT")
def report():
    """HTML reports."""


report.add_command(tokens_report)  # not of one kind: any value per token

for command in (init, migrate, status, commit, gc, views, query, ingest, export, report, demo, serve, slurm):
    cli.add_command(command)


def main() -> None:
    PROCESS["owned"] = True
    cli(prog_name="quanta-db")
