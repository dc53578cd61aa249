"""CLI of the corpus kind: ingest corpus, contexts, dm-math."""

from __future__ import annotations

import click

from cli.options import echo_result, force_option, pass_store, progress_option


@click.command()
@click.argument("source", type=click.Path())
@click.option("--name", required=True, help="Corpus name (the key in every table).")
@click.option("--tokenizer", required=True, help="Transformers tokenizer: hub name or local folder.")
@click.option("--tokenizer-name", help="Name of the tokenizer in the store [default: hub name or folder name].")
@click.option("--max-docs", type=click.IntRange(1), help="Read at most this many documents.")
@click.option("--max-tokens", type=click.IntRange(1), default=1024, show_default=True,
              help="Truncate documents to this many tokens.")
@click.option("--text-column", default="text", show_default=True, help="Field or column holding the text.")
@click.option("--subset-column", help="Field or column of the subset [default: meta.pile_set_name].")
@force_option
@progress_option
@pass_store
def corpus(ref, source, name, tokenizer, tokenizer_name, max_docs, max_tokens, text_column, subset_column, force, progress):
    """Tokenize a Pile-format JSONL(.zst) or Parquet SOURCE into documents, tokens and vocab."""
    from quanta_db.results.corpus.job import ingest_corpus

    result = ingest_corpus(
        ref.open(create=True), source, name, tokenizer, max_docs=max_docs, max_tokens=max_tokens,
        text_column=text_column, subset_column=subset_column, tokenizer_name=tokenizer_name,
        force=force, progress=progress,
    )
    echo_result(result)


@click.command()
@click.option("--from", "source_corpus", required=True, help="Corpus to sample from.")
@click.option("--name", required=True, help="Name of the new corpus of contexts.")
@click.option("--per-subset", type=click.IntRange(1), default=512, show_default=True, help="Contexts per subset.")
@click.option("--length", type=click.IntRange(2), default=512, show_default=True, help="Tokens per context (at most).")
@click.option("--seed", type=int, default=0, show_default=True)
@force_option
@pass_store
def contexts(ref, source_corpus, name, per_subset, length, seed, force):
    """Sample random token windows per subset of a corpus into a new corpus."""
    from quanta_db.results.corpus.contexts import ingest_contexts

    echo_result(ingest_contexts(ref.open(), source_corpus, name, per_subset, length, seed, force))


@click.command("dm-math")
@click.option("--name", required=True, help="Prefix of the two corpora (<name>_zero_shot, <name>_few_shot).")
@click.option("--tokenizer", required=True, help="Transformers tokenizer: hub name or local folder.")
@click.option("--per-category", type=click.IntRange(1), default=10, show_default=True)
@click.option("--categories", help="Comma-separated module/template names [default: all].")
@click.option("--source", type=click.Path(), help="Folder of released module__template.txt files [default: generate].")
@click.option("--few-shot-tokens", type=click.IntRange(2), default=2048, show_default=True,
              help="Token limit of a few-shot context.")
@click.option("--seed", type=int, default=0, show_default=True)
@force_option
@pass_store
def dm_math(ref, name, tokenizer, per_category, categories, source, few_shot_tokens, seed, force):
    """DeepMind-mathematics problems as aligned zero-shot and few-shot corpora."""
    from quanta_db.results.corpus.dm_math import ingest_dm_math

    wanted = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    echo_result(ingest_dm_math(ref.open(create=True), name, tokenizer, per_category, wanted, source, seed, few_shot_tokens,
                          force=force))


INGEST = [corpus, contexts, dm_math]
REPORT: list = []
