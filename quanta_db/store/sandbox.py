"""SQL from users runs read-only: one statement that only reads, on a connection that can open
no file outside the store's own tables and artifacts.

Two independent walls. The statement type comes from DuckDB's own parser
(``duckdb.extract_statements``), so ``COPY``, ``ATTACH``, ``INSTALL``/``LOAD``, ``SET``, ``CALL``,
``PRAGMA``, DDL and DML are refused however they are spelled. The connection allows file access
only under ``tables/`` and ``artifacts/`` (DuckDB's ``allowed_directories`` with
``enable_external_access = false``), then locks its configuration, so ``read_csv('/etc/passwd')``,
``glob('/root/*')`` or ``read_text(...)`` fail even inside an allowed statement.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from quanta_db.errors import QueryError, first_line

READ_STATEMENTS = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
READABLE_DIRS = ("tables", "artifacts")


def check_read_only(sql: str) -> None:
    """Raise a one-line QueryError unless ``sql`` is exactly one SELECT (or EXPLAIN) statement."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as error:
        raise QueryError(first_line(error)) from None
    if len(statements) != 1:
        raise QueryError(f"one SQL statement at a time, got {len(statements)}")
    kind = statements[0].type
    if kind not in READ_STATEMENTS:
        raise QueryError(f"only SELECT queries run against the store (this is {kind.name}); "
                         "the store's owner can pass --unsafe")


def restrict(con, root: Path) -> None:
    """Confine ``con`` (a DuckDB connection) to reading the store's own files, irreversibly."""
    allowed = [f"{(Path(root) / d).as_posix()}/" for d in READABLE_DIRS]
    con.execute("SET allowed_directories = ?", [allowed])
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
