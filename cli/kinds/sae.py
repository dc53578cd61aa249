"""CLI of the sae kind: ingest sae."""

from __future__ import annotations

import click

from cli.options import dtype_option, echo_result, force_option, pass_store, progress_option


@click.command()
@click.option("--sae", "source", required=True, help="A folder saved by sae-lens, or a sae-lens release (with --sae-id).")
@click.option("--sae-id", help="The SAE's id within a sae-lens release.")
@click.option("--name", help="Name of the SAE in the store [default: the folder name, or RELEASE/ID].")
@click.option("--model", required=True, help="A model the store knows (by name), or a hub name or local folder.")
@click.option("--step", type=int, help="Checkpoint step of the model (needed when it has several).")
@click.option("--corpus", required=True, help="Corpus whose tokens the SAE reads.")
@click.option("--n-tokens", type=click.IntRange(1), help="Use the first N tokens of the corpus [default: all].")
@click.option("--top-k", type=click.IntRange(1), default=20, show_default=True, help="Top examples kept per feature.")
@click.option("--ce-tokens", type=click.IntRange(0), default=20_000, show_default=True,
              help="At least this many tokens (whole batches) for the CE-loss metrics (reconstruction spliced into "
                   "the forward pass).")
@click.option("--batch-size", default="auto", show_default=True, help="Documents per batch, or auto (from memory).")
@click.option("--device", default="auto", show_default=True, help="cuda, cpu or auto.")
@dtype_option("--dtype", help="Model and SAE dtype (statistics accumulate in float32/float64).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the activation-band sampling.")
@force_option
@progress_option
@pass_store
def sae(ref, source, sae_id, name, model, step, corpus, n_tokens, top_k, ce_tokens, batch_size, device, dtype, seed,
        force, progress):
    """Per-feature statistics, top and activation-band examples, logit effects and metrics of an SAE (sae-lens)."""
    from quanta_db.results.sae.job import ingest_sae

    echo_result(ingest_sae(ref.open(), source, corpus, model, step=step, sae_id=sae_id, name=name, n_tokens=n_tokens,
                           top_k=top_k, batch_size=batch_size, device=device, dtype=dtype, ce_tokens=ce_tokens, seed=seed,
                           force=force, progress=progress))


@click.command("features")
@click.argument("sae_name", metavar="SAE")
@click.option("--corpus", help="Corpus the SAE was run on (needed when there are several).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default="features.html",
              show_default=True, help="Page to write.")
@click.option("--max-features", type=click.IntRange(1), default=1000, show_default=True,
              help="Features with examples, histogram and logit effects (the most active).")
@click.option("--before", type=click.IntRange(0), default=24, show_default=True, help="Context tokens before each example.")
@click.option("--after", type=click.IntRange(0), default=4, show_default=True, help="Context tokens after each example.")
@pass_store
def features_report(ref, sae_name, corpus, output, max_features, before, after):
    """A self-contained feature report of SAE: sortable list, stats, histogram, logit effects, examples."""
    from pathlib import Path

    from quanta_db.results.sae.report import render_features_html

    page = render_features_html(ref.open(), sae_name, corpus, max_features, before, after)
    Path(output).write_text(page, encoding="utf-8")
    click.echo(f"wrote {output} ({len(page.encode()) / 1024:.0f} KiB)")


INGEST = [sae]
REPORT = [features_report]
