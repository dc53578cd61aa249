"""Export commands: LaTeX tables for papers, file manifests and the SQL for other engines."""

from __future__ import annotations

import click

from quanta_db.cli.options import emit, output_option, pass_store, write_result
from quanta_db.errors import InputError
from quanta_db.reports.formats import FORMATS
from quanta_db.reports.latex import LatexOptions, to_latex


@click.group()
def export():
    """Export query results for papers."""


def _column_digits(pairs: tuple[str, ...]) -> dict[str, int]:
    digits = {}
    for pair in pairs:
        column, sep, value = pair.rpartition("=")
        if not sep or not value.isdigit() or int(value) < 1:
            raise InputError(f"--col-digits expects COLUMN=N with N >= 1, got {pair!r}")
        digits[column] = int(value)
    return digits


@export.command()
@click.argument("table")
@click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default="csv", show_default=True,
              help="Output format (parquet needs -o).")
@output_option
@pass_store
def manifest(ref, table, fmt, output):
    """The committed files of fact table TABLE (path, the file's keys, rows), for other engines:
    read these files, never a glob over tables/ (docs/store.md, "Other engines")."""
    from quanta_db.store.querying import Result

    write_result(Result(ref.open().manifest(table), False, 0.0), fmt, output)


@export.command()
@pass_store
def attach(ref):
    """The SQL that reads this store from any DuckDB client (the duckdb CLI, R, DBeaver, a
    notebook): its extensions installed and loaded, the lake attached read-only and used."""
    click.echo(ref.open().client_sql())


@export.command()
@click.argument("source")
@output_option
@click.option("--caption", help="Table caption (escaped).")
@click.option("--label", help="LaTeX label, e.g. tab:losses.")
@click.option("--digits", type=click.IntRange(1, 15), default=3, show_default=True, help="Significant digits of numbers.")
@click.option("--col-digits", multiple=True, metavar="COL=N", help="Significant digits for one column (repeatable).")
@click.option("--max", "maximize", multiple=True, metavar="COL", help="Bold the largest value of COL (repeatable).")
@click.option("--min", "minimize", multiple=True, metavar="COL", help="Bold the smallest value of COL (repeatable).")
@click.option("--siunitx", is_flag=True, help="Numeric columns as siunitx S columns.")
@pass_store
def latex(ref, source, output, caption, label, digits, col_digits, maximize, minimize, siunitx):
    """Export a view, table or SQL query (SOURCE) as a booktabs LaTeX table."""
    store = ref.open()
    df = store.query_df(store.resolve_source(source))
    options = LatexOptions(
        caption=caption, label=label, digits=digits, column_digits=_column_digits(col_digits),
        maximize=list(maximize), minimize=list(minimize), siunitx=siunitx, source=source,
    )
    emit(to_latex(df, options), output)
