"""``quanta-db report tokens``: the generic per-token page (any value per token, several panes)."""

from __future__ import annotations

import click

from quanta_db.cli.options import pass_store


@click.command("tokens")
@click.option("--corpus", required=True, help="Corpus whose documents are shown.")
@click.option("--docs", "n_docs", type=click.IntRange(1), default=20, show_default=True, help="The first N documents.")
@click.option("--doc-ids", help="Comma-separated document ids instead of --docs.")
@click.option("--loss", multiple=True, metavar="MODEL@STEP", help="Pane: raw loss (nats). Repeatable.")
@click.option("--stepwise", multiple=True, metavar="MODEL@STEP", help="Pane: loss minus the previous step's.")
@click.option("--model-diff", multiple=True, metavar="A,B@STEP", help="Pane: loss of model A minus model B.")
@click.option("--prompting", multiple=True, metavar="MODEL@STEP",
              help="Pane on a zero-shot corpus: few-shot minus zero-shot loss.")
@click.option("--sql", multiple=True, metavar="LABEL=SQL", help="Pane: any query returning doc_id, pos, value.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default="tokens.html",
              show_default=True, help="Page to write.")
@pass_store
def tokens_report(ref, corpus, n_docs, doc_ids, loss, stepwise, model_diff, prompting, sql, output):
    """Documents with each token coloured by a value: raw loss, differences, or any SQL (one pane each)."""
    from pathlib import Path

    from quanta_db.errors import InputError
    from quanta_db.results.corpus.token_report import panes_from_options, render_tokens_html

    try:
        ids = [int(d) for d in doc_ids.split(",") if d.strip()] if doc_ids else None
    except ValueError:
        raise InputError(f"--doc-ids expects comma-separated integers, got {doc_ids!r}") from None
    store = ref.open()
    panes = panes_from_options(corpus, loss, stepwise, model_diff, prompting, sql)
    page = render_tokens_html(store, corpus, panes, ids, n_docs)
    Path(output).write_text(page, encoding="utf-8")
    click.echo(f"wrote {output} ({len(panes)} pane{'s' if len(panes) != 1 else ''}, {len(page.encode()) / 1024:.0f} KiB)")
