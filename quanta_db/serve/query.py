"""Served queries: read-only and sandboxed like ``quanta-db query``, with a time and a row limit,
and results encoded as typed JSON."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

import duckdb
import pyarrow as pa

from quanta_db.errors import QueryError, first_line
from quanta_db.store import sandbox

MAX_SAFE_INTEGER = 2**53 - 1  # larger integers lose digits as JSON numbers in JavaScript


@dataclass
class Result:
    table: pa.Table
    truncated: bool  # more rows than the row limit
    elapsed_ms: float


def run(connection: duckdb.DuckDBPyConnection, sql: str, params: list | None, time_limit_ms: int,
        max_rows: int | None, macros: frozenset[str] = frozenset()) -> Result:
    """One read-only statement on a new cursor of ``connection`` (read-only, confined to the
    store's files: see :mod:`quanta_db.serve.snapshot`); interrupted after ``time_limit_ms``; at
    most ``max_rows`` rows (None: all); ``macros``: the store's saved analyses (see
    :func:`quanta_db.store.sandbox.check_read_only`)."""
    sandbox.check_read_only(sql, macros)
    con = connection.cursor()
    timer = threading.Timer(time_limit_ms / 1000, con.interrupt)
    start = time.perf_counter()
    try:
        timer.start()
        relation = con.sql(sql, params=params or None)
        if relation is None:
            return Result(pa.table({}), False, 0.0)
        table = (relation.limit(max_rows + 1) if max_rows is not None else relation).to_arrow_table()
    except duckdb.InterruptException:
        raise QueryError(f"query stopped by the time limit ({time_limit_ms} ms)") from None
    except duckdb.Error as error:
        if not timer.is_alive() and time.perf_counter() - start >= time_limit_ms / 1000:
            raise QueryError(f"query stopped by the time limit ({time_limit_ms} ms)") from None
        raise QueryError(first_line(error)) from None
    finally:
        timer.cancel()
        con.close()
    elapsed_ms = (time.perf_counter() - start) * 1000
    truncated = max_rows is not None and table.num_rows > max_rows
    return Result(table.slice(0, max_rows) if truncated else table, truncated, elapsed_ms)


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
    """{"columns": [{"name", "type"}], "rows": [[...]], "truncated", "elapsed_ms"} — rows as lists."""
    columns = [{"name": f.name, "type": str(f.type)} for f in result.table.schema]
    data = [result.table.column(i).to_pylist() for i in range(result.table.num_columns)]
    rows = [[json_value(column[r]) for column in data] for r in range(result.table.num_rows)]
    return {"columns": columns, "rows": rows, "row_count": len(rows), "truncated": result.truncated,
            "elapsed_ms": round(result.elapsed_ms, 2)}
