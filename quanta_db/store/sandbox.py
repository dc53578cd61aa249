"""SQL from users runs read-only: one statement that can do nothing but read, on a connection that
can open no file but the store's committed ones.

Two independent walls.

1. The statement. DuckDB's own parser (``duckdb.extract_statements``) gives its type; only a
   SELECT passes, and only if DuckDB serialises it as a SELECT tree (``json_serialize_sql``
   refuses every other kind of statement) in which every query node reads — DuckDB runs a COPY,
   INSERT, UPDATE or DELETE written as a common table expression — and every table function
   is one that reads; or an ``EXPLAIN [ANALYZE]`` whose explained statement passes the same test
   (``EXPLAIN ANALYZE`` runs what it explains, so ``EXPLAIN ANALYZE COPY`` is a write).
   ``COPY``, ``ATTACH``, ``INSTALL``/``LOAD``, ``SET``, ``CALL``, ``PRAGMA``, DDL and DML are
   refused however they are spelled or wrapped.
2. The connection. Its file access is limited to the exact committed files of the store (the
   ``files`` table: tables' Parquet and artifacts) through DuckDB's ``allowed_paths`` with
   ``enable_external_access = false``; no directory is allowed, so even a statement that slipped
   past the first wall could create no file, overwrite no partition folder, and attach no
   database; spilling to a temporary folder is off and the configuration is locked. DuckDB itself
   keeps the attached catalog file readable (its bytes hold the same rows any SELECT returns).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import duckdb

from quanta_db.errors import QueryError, first_line
from quanta_db.store import lake
from quanta_db.store.sql import statement

OWNER_HINT = "the store's owner can pass --unsafe"
UNKNOWN_STATEMENT_TYPE = "a statement type unknown to this DuckDB client"


def _parse(sql: str) -> list:
    # Parsing expands some statements by reading files (IMPORT DATABASE reads <dir>/schema.sql):
    # parse where no file can be read, not in duckdb's default connection.
    try:
        return _serialiser().cursor().extract_statements(sql)
    except duckdb.Error as error:
        raise QueryError(first_line(error)) from None


@functools.cache
def _serialiser() -> duckdb.DuckDBPyConnection:
    """An in-memory connection that only parses and serialises SQL, and reads no file (created
    on first use; each use takes its own cursor, so threads do not share one)."""
    return duckdb.connect(":memory:", config={"enable_external_access": False})


# Query nodes that only read. DuckDB also allows COPY / INSERT / UPDATE / DELETE as the body of a
# common table expression (``WITH t AS (COPY ... TO 'f') SELECT ...`` is a SELECT statement that
# writes), which its serialiser keeps as *_QUERY_NODE entries of the tree.
READ_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})
# Table functions that only read (files, generated rows, metadata). Others run SQL of their own
# (``query``, ``json_execute_serialized_sql``, ``postgres_query``), read a table named by a string
# (``query_table``: the lake's metadata database, below) or change the database's state (``checkpoint``,
# ``enable_profiling``, logging, external resources, grammar extensions).
READ_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "repeat_row", "glob", "summary", "sniff_csv", "json_each",
    "json_tree", "seq_scan", "read_duckdb", "test_all_types", "test_vector_types",
    "icu_calendar_names", "pg_timezone_names", "which_secret",
})
READ_TABLE_FUNCTION_PREFIXES = ("read_", "parquet_", "duckdb_", "pragma_")
# DuckLake attaches the database holding its metadata under this prefix; on PostgreSQL that
# database may hold other schemas (other stores) too, so user SQL reads none of it.
METADATA_PREFIX = "__ducklake_metadata"


@functools.cache
def builtin_table_functions() -> frozenset[str]:
    """DuckDB's own table functions (no extension's): no saved analysis may take one's name."""
    cursor = _serialiser().cursor()
    try:
        return frozenset(name for (name,) in cursor.execute(statement("builtin_table_functions")).fetchall())
    finally:
        cursor.close()


def _write_in_tree(node, macros: frozenset[str] | None) -> str | None:
    """The first construct of a serialised statement tree that is not a pure read, or None;
    ``macros`` are the store's own table macros (its saved analyses), which read (None: any
    table function but DuckDB's own may be one, for :func:`precheck`)."""
    if isinstance(node, list):
        return next((found for child in node if (found := _write_in_tree(child, macros))), None)
    if not isinstance(node, dict):
        return None
    node_type = node.get("type")
    if isinstance(node_type, str) and node_type.endswith("_NODE") and node_type not in READ_NODES:
        return node_type.removesuffix("_NODE").replace("_QUERY", "") + " inside the query"
    if node_type == "BASE_TABLE" and any(str(node.get(part)).lower().startswith(METADATA_PREFIX)
                                         for part in ("catalog_name", "schema_name")):
        return "a table of the catalog's metadata database"
    if node_type == "TABLE_FUNCTION":
        name = str((node.get("function") or {}).get("function_name")).lower()
        reads = name in READ_TABLE_FUNCTIONS or name.startswith(READ_TABLE_FUNCTION_PREFIXES)
        saved = name not in builtin_table_functions() if macros is None else name in macros
        if not (reads or saved):
            return f"table function {name}()"
    return next((found for child in node.values() if (found := _write_in_tree(child, macros))), None)


def serialised(sql: str) -> dict:
    """DuckDB's serialised tree of ``sql`` (``{"error": true, ...}`` unless it is one SELECT)."""
    cursor = _serialiser().cursor()
    try:
        return json.loads(cursor.execute(statement("serialize_sql"), [sql]).fetchone()[0])
    finally:
        cursor.close()


def _not_a_read(sql: str, macros: frozenset[str] | None) -> str | None:
    """Why ``sql`` (one SELECT statement by the parser) is not a pure read, or None. DuckDB
    serialises only SELECT statements; their trees are then walked for writing parts."""
    tree = serialised(sql)
    if tree.get("error"):
        return "no SELECT tree"
    return _write_in_tree(tree.get("statements"), macros)


def _explained(sql: str) -> str:
    """The statement an EXPLAIN explains: the text after ``EXPLAIN``, an optional parenthesised
    option list and an optional ``ANALYZE``/``ANALYSE``, cut at DuckDB's own token positions."""
    tokens = duckdb.tokenize(sql)
    words = [(start, sql[start:end].strip().upper())
             for (start, _), (end, _) in zip(tokens, [*tokens[1:], (len(sql), None)])]
    # The statement parsed as one EXPLAIN, so a statement follows EXPLAIN, its option list and
    # ANALYZE; the option list holds no parentheses of its own (were it ever to, the text after its
    # first ")" would not parse, and the statement is refused).
    index = 1  # words[0] is EXPLAIN
    if words[index][1] == "(":
        index = next(i for i, (_, word) in enumerate(words) if word == ")") + 1
    if words[index][1] in ("ANALYZE", "ANALYSE"):
        index += 1
    return sql[words[index][0]:]


def _type_name(statement) -> str:
    # A statement type newer than this DuckDB client's enum (UPDATE EXTENSIONS) raises, or is named "???".
    try:
        name = statement.type.name
    except ValueError:
        return UNKNOWN_STATEMENT_TYPE
    return name if name.isidentifier() else UNKNOWN_STATEMENT_TYPE


def table_macros(con) -> frozenset[str]:
    """The names of the store's saved analyses, installed as table macros (or views) in the
    catalog ``con`` is connected to (its ``saved_queries`` table: listing ``duckdb_functions()``
    instead costs ~20 ms a query)."""
    return frozenset(name.lower() for (name,) in con.execute(statement("saved_query_names")).fetchall())


# Statements already checked in this process, with the refusal each got (None: passed): a
# polling reader's statement is checked twice a query (before the catalog opens, then with the
# store's saved analyses), about 3 ms each, for the same answer every time. Only statements up
# to MAX_CHECKED_CHARS are kept, so what a hostile client sends can hold at most ~4 MB here.
_CHECKED: dict[tuple[str, frozenset[str] | None], str | None] = {}
MAX_CHECKED = 1024
MAX_CHECKED_CHARS = 4096
_UNCHECKED = object()


def check_read_only(sql: str, macros: frozenset[str] | None = frozenset()) -> None:
    """Raise a one-line QueryError unless ``sql`` is exactly one statement that can only read:
    a SELECT, or an EXPLAIN [ANALYZE] of one; ``macros`` (see :func:`table_macros`) are the
    store's saved analyses, callable as table functions (None: any table function may be one)."""
    key = (sql, macros)
    refusal = _CHECKED.get(key, _UNCHECKED)  # one lookup: another thread may clear it meanwhile
    if refusal is _UNCHECKED:
        refusal = _refusal(sql, macros)
        if len(sql) <= MAX_CHECKED_CHARS:
            if len(_CHECKED) >= MAX_CHECKED:
                _CHECKED.clear()
            _CHECKED[key] = refusal
    if refusal is not None:
        raise QueryError(refusal)


def _refusal(sql: str, macros: frozenset[str] | None) -> str | None:
    """Why :func:`check_read_only` refuses ``sql`` (None: it passes); a statement that does not
    parse raises its parser's line."""
    statements = _parse(sql)
    if not statements:
        return "no SQL statement given"
    if len(statements) != 1:
        return f"one SQL statement at a time, got {len(statements)}"
    statement_type = _type_name(statements[0])
    if statement_type == "EXPLAIN":
        inner = _explained(sql)
        what = _type_name(_parse(inner)[0])  # one statement: the text of the one the EXPLAIN parsed with
        if what != "SELECT":
            return f"only a SELECT query can be explained here (this explains {what}); {OWNER_HINT}"
        sql = inner
    elif statement_type != "SELECT":
        return f"only SELECT queries run against the store (this is {statement_type}); {OWNER_HINT}"
    reason = _not_a_read(sql, macros)
    if reason:
        return f"only queries that read run against the store (this has {reason}); {OWNER_HINT}"
    return None


def planned_statement(sql: str) -> str:
    """The SELECT that ``sql`` (one statement that :func:`check_read_only` passed) runs: itself,
    or the one it explains."""
    statements = _parse(sql)
    return _explained(sql) if len(statements) == 1 and _type_name(statements[0]) == "EXPLAIN" else sql


def precheck(sql: str) -> None:
    """:func:`check_read_only` before any connection is open, with every table function that is
    not DuckDB's own taken for a saved analysis (only the store's catalog can tell): everything
    else it refuses is refused without opening the catalog; the full check runs on the connection."""
    check_read_only(sql, None)


def store_folder(root: Path) -> str:
    """The store's folder as the prefix of every path in it (with its trailing ``/``): the
    readable area of a connection confined to every committed file."""
    return Path(root).as_posix().rstrip("/") + "/"


def restrict(con, root: Path | None, memory_limit: str | None = None, paths: list[str] | None = None,
             deletes: list[str] | None = None) -> None:
    """Confine ``con`` (a read-only DuckDB connection to a store's catalog, or to a copy of it) to
    reading the committed files of the store at ``root``, irreversibly: all of them, or only
    ``paths`` (absolute; see :mod:`quanta_db.store.reach`; ``root`` is then not used) with the lake's delete files
    (``deletes``: listed now when not given); ``memory_limit`` (DuckDB syntax, e.g. ``'2GB'``)
    caps what its queries may hold, none spilling to disk."""
    deletes = lake.delete_files(con) if deletes is None else deletes
    if paths is None:
        con.execute(statement("allow_committed_files"), [store_folder(root), deletes])
    else:
        con.execute(statement("allow_files"), [[*paths, *deletes]])
    if memory_limit:
        con.execute("SET memory_limit = ?", [memory_limit])  # pragma: no mutate
    con.execute(statement("confine"))
