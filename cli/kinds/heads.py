"""CLI of the heads kind: ingest heads."""

from __future__ import annotations

import click

from cli.options import echo_result, force_option, pass_store, progress_option


@click.command()
@click.option("--model", required=True, help="A model the store knows (by name), or a hub name or local folder.")
@click.option("--name", help="Name of the model in the store [default: as ingest losses names it].")
@click.option("--step", type=int, help="Checkpoint step (needed when the model has several).")
@click.option("--corpus", required=True, help="Corpus whose tokens the per-token metrics cover.")
@click.option("--max-docs", type=click.IntRange(1), help="Only the first N documents [default: all].")
@click.option("--batch-size", default="auto", show_default=True, help="Documents per batch, or auto (from memory).")
@click.option("--device", default="auto", show_default=True, help="cuda, cpu or auto.")
@click.option("--induction-length", type=click.IntRange(2), default=50, show_default=True,
              help="Random tokens per half of the repeated sequences of the induction / detector scores.")
@click.option("--vocab-range", help="LOW,HIGH token ids the random sequences draw from [default: the whole vocabulary].")
@click.option("--seed", type=int, default=0, show_default=True)
@force_option
@progress_option
@pass_store
def heads(ref, model, name, step, corpus, max_docs, batch_size, device, induction_length, vocab_range, seed, force,
          progress):
    """Per-token direct logit attribution and mover scores of every head, and per-head induction / OV scores."""
    from quanta_db.job import parse_pair
    from quanta_db.results.heads.job import ingest_heads

    parsed = parse_pair(vocab_range, int, ",", "--vocab-range expects LOW,HIGH") if vocab_range else None
    echo_result(ingest_heads(ref.open(), model, corpus, name=name, step=step, max_docs=max_docs, batch_size=batch_size,
                             device=device, induction_length=induction_length, vocab_range=parsed, seed=seed,
                             force=force, progress=progress))


INGEST = [heads]
REPORT: list = []
