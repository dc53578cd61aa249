"""CLI of the filters kind: ingest filters."""

from __future__ import annotations

import click

from cli.options import echo_result, force_option, pass_store, progress_option


@click.command()
@click.option("--corpus", required=True, help="Corpus to mark.")
@click.option("--kind", type=click.Choice(["trigram", "bigram", "induction"]), required=True,
              help="trigram: the trigram ending here occurred earlier; bigram (= induction): the bigram did.")
@force_option
@progress_option
@pass_store
def filters(ref, corpus, kind, force, progress):
    """Boolean token filters of a corpus (present trigram, induction bigram)."""
    from quanta_db.results.filters.job import ingest_filters

    echo_result(ingest_filters(ref.open(), corpus, kind, force=force, progress=progress))


INGEST = [filters]
REPORT: list = []
