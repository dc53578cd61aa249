"""Ingest commands: each runs one job of quanta_db.jobs and prints what it committed."""

from __future__ import annotations

import click

from cli.options import force_option, pass_store, progress_option


@click.group()
def ingest():
    """Compute results and commit them to the store as one run."""


def report(result) -> None:
    prefix = "skipped" if result.skipped else f"committed run {result.run_id}"
    click.echo(f"{prefix}: {result.message}" + ("" if result.skipped else f" ({result.rows_written:,} rows)"))


@ingest.command()
@click.argument("source", type=click.Path())
@click.option("--name", required=True, help="Corpus name (the key in every table).")
@click.option("--tokenizer", required=True, help="Transformers tokenizer: hub name or local folder.")
@click.option("--tokenizer-name", help="Name of the tokenizer in the store [default: hub name or folder name].")
@click.option("--max-docs", type=click.IntRange(1), help="Read at most this many documents.")
@click.option("--max-tokens", type=click.IntRange(1), default=1024, show_default=True, help="Truncate documents to this many tokens.")
@click.option("--text-column", default="text", show_default=True, help="Field or column holding the text.")
@click.option("--subset-column", help="Field or column of the subset [default: meta.pile_set_name].")
@force_option
@progress_option
@pass_store
def corpus(ref, source, name, tokenizer, tokenizer_name, max_docs, max_tokens, text_column, subset_column, force, progress):
    """Tokenize a Pile-format JSONL(.zst) or Parquet SOURCE into documents, tokens and vocab."""
    from quanta_db.jobs.corpus import ingest_corpus

    result = ingest_corpus(
        ref.open(create=True), source, name, tokenizer, max_docs=max_docs, max_tokens=max_tokens,
        text_column=text_column, subset_column=subset_column, tokenizer_name=tokenizer_name,
        force=force, progress=progress,
    )
    report(result)
