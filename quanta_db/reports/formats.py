"""Query results in every output format, one table of them: ``quanta-db query --format``,
``export`` and serve's downloads and JSON API all encode through :func:`encode`, so a query has
one JSON shape everywhere."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from quanta_db.errors import InputError
from quanta_db.reports.latex import LatexOptions, to_latex
from quanta_db.store.querying import Result

MAX_SAFE_INTEGER = 2**53 - 1  # larger integers lose digits as JSON numbers in JavaScript


@dataclass(frozen=True)
class Format:
    media_type: str
    extension: str
    encode: Callable[[Result, str | None, int | None], bytes]  # (result, source SQL, rows to show)
    binary: bool = False  # written to a file, never printed
    download: bool = True  # offered by serve


def _frame(result: Result) -> pd.DataFrame:
    from quanta_db.store.store import arrow_to_pandas

    return arrow_to_pandas(result.table)


def _parquet(result: Result, source, max_rows) -> bytes:
    out = io.BytesIO()
    pq.write_table(result.table, out)
    return out.getvalue()


FORMATS: dict[str, Format] = {
    "table": Format("text/plain", "txt", lambda r, source, rows: _plain_table(_frame(r), rows).encode(),
                    download=False),
    "csv": Format("text/csv", "csv", lambda r, source, rows: _frame(r).to_csv(index=False).encode()),
    "json": Format("application/json", "json", lambda r, source, rows: (json.dumps(to_json(r)) + "\n").encode()),
    "markdown": Format("text/markdown", "md", lambda r, source, rows: markdown_table(_frame(r)).encode()),
    "parquet": Format("application/vnd.apache.parquet", "parquet", _parquet, binary=True),
    "latex": Format("application/x-tex", "tex",
                    lambda r, source, rows: to_latex(_frame(r), LatexOptions(source=source)).encode()),
}


def output_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise InputError(f"unknown format {name!r}; choose from {', '.join(FORMATS)}") from None


def encode(result: Result, fmt: str, source: str | None = None, max_rows: int | None = None) -> bytes:
    """``result`` in format ``fmt``; ``source``: the SQL (LaTeX names it); ``max_rows``: rows the
    plain table shows."""
    return output_format(fmt).encode(result, source, max_rows)


def render(table: pa.Table, fmt: str, source: str | None = None, max_rows: int | None = None) -> str:
    """``table`` as text in ``fmt`` (every format but parquet)."""
    return encode(Result(table, False, 0.0), fmt, source, max_rows).decode()


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


def json_value(value):
    """A Python value from Arrow as JSON: NULL → null, NaN/±inf → "NaN"/"Infinity"/"-Infinity",
    integers beyond 2^53 and decimals a double cannot hold → exact strings, dates and times → ISO
    text, nested values recursively."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_SAFE_INTEGER else str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Decimal):  # a JSON number when a double holds it exactly, else exact text
        as_float = float(value)
        return as_float if Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def to_json(result: Result) -> dict:
    """The one JSON shape of a query result: {"columns": [{"name", "type"}], "rows": [[...]],
    "row_count", "truncated", "elapsed_ms"}, rows as lists of :func:`json_value`."""
    columns = [{"name": f.name, "type": str(f.type)} for f in result.table.schema]
    data = [result.table.column(i).to_pylist() for i in range(result.table.num_columns)]
    rows = [[json_value(column[r]) for column in data] for r in range(result.table.num_rows)]
    return {"columns": columns, "rows": rows, "row_count": len(rows), "truncated": result.truncated,
            "elapsed_ms": round(result.elapsed_ms, 2)}
