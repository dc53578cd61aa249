"""Ingest commands: each runs one job of quanta_db.jobs and prints what it committed."""

from __future__ import annotations

import click

from cli.options import device_option, force_option, pass_store, progress_option


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


def _report_all(results) -> None:
    for result in results:
        report(result)


@ingest.command()
@click.option("--model", "model_source", required=True, help="Hub name, save_pretrained folder, or folder of stepN/ folders.")
@click.option("--name", help="Model name in the store [default: last part of the source].")
@click.option("--corpus", required=True, help="Corpus to score (ingested with the model's tokenizer).")
@click.option("--steps", help="Comma-separated training steps, or 'all' (Pythia's 154 checkpoints).")
@click.option("--revision", "revisions", multiple=True, help="Hub revision(s) instead of --steps (repeatable).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32", show_default=True)
@click.option("--batch-size", default="auto", show_default=True, help="'auto' (token budget from free memory) or documents per batch.")
@click.option("--tokenizer", help="Tokenizer to check the corpus against [default: the model's own].")
@click.option("--shard", help="i/n: this process scores documents with doc_id % n == i.")
@device_option
@force_option
@progress_option
@pass_store
def losses(ref, model_source, name, corpus, steps, revisions, dtype, batch_size, tokenizer, shard, device, force, progress):
    """Per-token losses (nats) of a model at one or more checkpoints over a corpus."""
    from quanta_db.errors import InputError
    from quanta_db.jobs.common import parse_shard
    from quanta_db.jobs.losses import ingest_losses
    from quanta_db.sources.models import parse_steps

    if batch_size != "auto" and not (batch_size.isdigit() and int(batch_size) > 0):
        raise InputError(f"--batch-size must be 'auto' or a positive integer, got {batch_size!r}")
    results = ingest_losses(
        ref.open(), model_source, corpus, name=name, steps=parse_steps(steps), revisions=revisions, dtype=dtype,
        batch_size=batch_size, device=device, shard=parse_shard(shard), tokenizer=tokenizer, force=force,
        progress=progress,
    )
    _report_all(results)


@ingest.command()
@click.option("--from", "source_corpus", required=True, help="Corpus to sample from.")
@click.option("--name", required=True, help="Name of the new corpus of contexts.")
@click.option("--per-subset", type=click.IntRange(1), default=512, show_default=True, help="Contexts per subset.")
@click.option("--length", type=click.IntRange(2), default=512, show_default=True, help="Tokens per context (at most).")
@click.option("--seed", type=int, default=0, show_default=True)
@force_option
@pass_store
def contexts(ref, source_corpus, name, per_subset, length, seed, force):
    """Sample random token windows per subset of a corpus into a new corpus."""
    from quanta_db.jobs.contexts import ingest_contexts

    report(ingest_contexts(ref.open(), source_corpus, name, per_subset, length, seed, force))


@ingest.command("dm-math")
@click.option("--name", required=True, help="Prefix of the two corpora (<name>_zero_shot, <name>_few_shot).")
@click.option("--tokenizer", required=True, help="Transformers tokenizer: hub name or local folder.")
@click.option("--per-category", type=click.IntRange(1), default=10, show_default=True)
@click.option("--categories", help="Comma-separated module/template names [default: all].")
@click.option("--source", type=click.Path(), help="Folder of released module__template.txt files [default: generate].")
@click.option("--few-shot-tokens", type=click.IntRange(2), default=2048, show_default=True, help="Token limit of a few-shot context.")
@click.option("--seed", type=int, default=0, show_default=True)
@force_option
@pass_store
def dm_math(ref, name, tokenizer, per_category, categories, source, few_shot_tokens, seed, force):
    """DeepMind-mathematics problems as aligned zero-shot and few-shot corpora."""
    from quanta_db.jobs.dm_math import ingest_dm_math

    wanted = [c.strip() for c in categories.split(",") if c.strip()] if categories else None
    report(ingest_dm_math(ref.open(create=True), name, tokenizer, per_category, wanted, source, seed, few_shot_tokens,
                          force=force))


@ingest.command()
@click.option("--corpus", required=True, help="Corpus to mark.")
@click.option("--kind", type=click.Choice(["trigram", "bigram", "induction"]), required=True,
              help="trigram: the trigram ending here occurred earlier; bigram (= induction): the bigram did.")
@force_option
@progress_option
@pass_store
def filters(ref, corpus, kind, force, progress):
    """Boolean token filters of a corpus (present trigram, induction bigram)."""
    from quanta_db.jobs.filters import ingest_filters

    report(ingest_filters(ref.open(), corpus, kind, force=force, progress=progress))


@ingest.command()
@click.option("--model", help="Model name in the store (its losses must be ingested).")
@click.option("--step", type=int, help="Training step of the model.")
@click.option("--corpus", help="Corpus whose tokens are clustered.")
@click.option("--loss-below", type=float, default=0.1, show_default=True, help="Keep tokens with loss below this.")
@click.option("--loss-unit", type=click.Choice(["nats", "bits"]), default="nats", show_default=True)
@click.option("--exclude-filter", help="Drop tokens where this filter is true (e.g. trigram).")
@click.option("--n-tokens", type=click.IntRange(2), default=10000, show_default=True)
@click.option("--skip", type=click.IntRange(1), default=50, show_default=True, help="Take every skip-th candidate.")
@click.option("--n-clusters", type=click.IntRange(2), default=400, show_default=True)
@click.option("--n-init", type=click.IntRange(1), default=30, show_default=True, help="k-means restarts.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sketch", type=click.IntRange(16), help="CountSketch the gradients to this many dimensions.")
@click.option("--grad-dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32",
              show_default=True, help="Storage of gradient blocks (products accumulate in float32).")
@click.option("--grad-memory-gb", type=float, help="Memory for gradient blocks [default: 70% of free GPU, 4 GB on CPU].")
@click.option("--from-similarity", help="Recluster the similarity matrix of this run instead.")
@device_option
@force_option
@progress_option
@pass_store
def clusters(ref, model, step, corpus, loss_below, loss_unit, exclude_filter, n_tokens, skip, n_clusters, n_init,
             seed, sketch, grad_dtype, grad_memory_gb, from_similarity, device, force, progress):
    """Quanta: cluster low-loss tokens by the cosine similarity of their loss gradients."""
    from quanta_db.jobs.clusters import ingest_clusters

    report(ingest_clusters(
        ref.open(), model, step, corpus, loss_below=loss_below, loss_unit=loss_unit, exclude_filter=exclude_filter,
        n_tokens=n_tokens, skip=skip, n_clusters=n_clusters, n_init=n_init, seed=seed, device=device, sketch=sketch,
        grad_dtype=grad_dtype, grad_memory_gb=grad_memory_gb, from_similarity=from_similarity, force=force,
        progress=progress,
    ))
