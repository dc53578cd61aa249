"""Query results as text: table, csv, json, markdown, latex; parquet as a file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from quanta_db.errors import InputError
from quanta_db.reports.latex import LatexOptions, to_latex

FORMATS = ("table", "csv", "json", "markdown", "parquet", "latex")


def render(table: pa.Table, fmt: str, source: str | None = None, max_rows: int | None = None) -> str:
    """``table`` as text in ``fmt`` (every format but parquet)."""
    from quanta_db.store.store import arrow_to_pandas

    df = arrow_to_pandas(table)
    if fmt == "table":
        return _plain_table(df, max_rows)
    if fmt == "csv":
        return df.to_csv(index=False)
    if fmt == "json":
        return json.dumps(json.loads(df.to_json(orient="records", date_format="iso")), indent=None) + "\n"
    if fmt == "markdown":
        return markdown_table(df)
    if fmt == "latex":
        return to_latex(df, LatexOptions(source=source))
    raise InputError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def write_parquet(table: pa.Table, path) -> None:
    if not path:
        raise InputError("--format parquet needs -o FILE")
    pq.write_table(table, Path(path))


def _plain_table(df: pd.DataFrame, max_rows: int | None) -> str:
    if df.empty:
        return ("  ".join(df.columns) + "\n(0 rows)\n") if len(df.columns) else "(no result)\n"
    shown = df if max_rows is None or len(df) <= max_rows else df.head(max_rows)
    text = shown.to_string(index=False, max_colwidth=80)
    if len(shown) < len(df):
        text += f"\n... {len(df) - len(shown)} more rows (use --format csv or -o to see all)"
    return text + "\n"


def markdown_table(df: pd.DataFrame) -> str:
    """GitHub-flavoured markdown; ``|`` inside cells is escaped."""
    def cell(value) -> str:
        text = "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)
        return text.replace("|", r"\|").replace("\n", r"\n")

    lines = ["| " + " | ".join(cell(c) for c in df.columns) + " |", "|" + "|".join("---" for _ in df.columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
