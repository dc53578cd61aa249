"""CLI of the losses kind: ingest losses."""

from __future__ import annotations

import click

from cli.options import device_option, dtype_option, echo_results, force_option, pass_store, progress_option


@click.command()
@click.option("--model", "model_source", required=True, help="Hub name, save_pretrained folder, or folder of stepN/ folders.")
@click.option("--name", help="Model name in the store [default: last part of the source].")
@click.option("--corpus", required=True, help="Corpus to score (ingested with the model's tokenizer).")
@click.option("--steps", help="Comma-separated training steps, or 'all' (Pythia's 154 checkpoints).")
@click.option("--revision", "revisions", multiple=True, help="Hub revision(s) instead of --steps (repeatable).")
@dtype_option("--dtype")
@click.option("--batch-size", default="auto", show_default=True,
              help="'auto' (token budget from free memory) or documents per batch.")
@click.option("--tokenizer", help="Tokenizer to check the corpus against [default: the model's own].")
@click.option("--shard", help="i/n: this process scores documents with doc_id % n == i.")
@device_option
@click.option("--compile", "compile_model", is_flag=True,
              help="torch.compile the model on CUDA (ignored on CPU, where it does not help).")
@force_option
@progress_option
@pass_store
def losses(ref, model_source, name, corpus, steps, revisions, dtype, batch_size, tokenizer, shard, device, compile_model,
           force, progress):
    """Per-token losses (nats) of a model at one or more checkpoints over a corpus."""
    from quanta_db.job import parse_shard
    from quanta_db.results.losses.job import ingest_losses
    from quanta_db.runtime.models import parse_steps

    results = ingest_losses(
        ref.open(), model_source, corpus, name=name, steps=parse_steps(steps), revisions=revisions, dtype=dtype,
        batch_size=batch_size, device=device, shard=parse_shard(shard), tokenizer=tokenizer, compile_model=compile_model,
        force=force, progress=progress,
    )
    echo_results(results)


INGEST = [losses]
REPORT: list = []
