"""Views over committed data: one typed view per fact table, plus the saved analyses.

Fact views read the lake tables that committed files are registered in (never a glob), so
staged or half-written files are invisible. Saved analyses are ``queries/<kind>/*.sql`` files with a header::

    -- name: low_loss_tokens
    -- description: Tokens whose loss is below a threshold.
    -- parameters: threshold := 0.1

A file without parameters becomes a view; one with parameters becomes a DuckDB table macro
called as ``SELECT * FROM low_loss_tokens(threshold := 0.05)``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from quanta_db.errors import QueryError, first_line
from quanta_db.store import sandbox
from quanta_db.store.lake import FACT_SCHEMA, SESSION_SCHEMA
from quanta_db.store.registry import fact_tables
from quanta_db.store.sql import in_transaction, quote_ident, statement
from quanta_db.store.tables import duckdb_type

HEADER_LINE = re.compile(r"^--\s*(name|description|parameters)\s*:\s*(.*)$")


def ensure_fact_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create each declared fact table in the lake schema ``tables`` (or add the columns a newer
    declaration has), and the view of the same name in ``main`` that queries read through.

    Committed files are registered in the lake tables (``ducklake_add_data_files``), so the
    views never name a path: a commit touches no view, and the lake prunes files by their
    statistics instead of reading every footer.
    """
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {FACT_SCHEMA}")
    for spec in fact_tables().values():
        table = f"{FACT_SCHEMA}.{quote_ident(spec.name)}"
        present = {name for (name,) in con.execute(statement("fact_table_columns"), [spec.name]).fetchall()}
        if not present:
            columns = ", ".join(f"{quote_ident(f.name)} {duckdb_type(f.type)}" for f in spec.schema)
            con.execute(f"CREATE TABLE {table} ({columns})")
        for field_ in spec.schema:
            if present and field_.name not in present:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {quote_ident(field_.name)} {duckdb_type(field_.type)}")
        names = ", ".join(quote_ident(f.name) for f in spec.schema)
        con.execute(f"CREATE OR REPLACE VIEW main.{quote_ident(spec.name)} AS SELECT {names} FROM {table}")


@dataclass(frozen=True)
class SavedQuery:
    name: str
    description: str
    parameters: str
    body: str
    path: Path

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.body.encode()).hexdigest()

    def create_sql(self) -> str:
        """A view in the lake, or a table macro of the session (see :func:`install_session_macros`)."""
        if self.parameters:
            return (f"CREATE OR REPLACE MACRO {SESSION_SCHEMA}.{quote_ident(self.name)}({self.parameters}) "
                    f"AS TABLE {self.body}")
        return f"CREATE OR REPLACE VIEW {quote_ident(self.name)} AS {self.body}"


def drop_saved_view_sql(name: str) -> str:
    return f"DROP VIEW IF EXISTS main.{quote_ident(name)}"


def parse_saved_query(path: Path, check_names: bool = True) -> SavedQuery:
    """Read one ``queries/*.sql`` file: header comment lines, then one SELECT; ``check_names``
    refuses a name that DuckDB's own table functions take (listing them costs 35 ms a process,
    so a caller that only compares the files with what the store holds skips it)."""
    header: dict[str, str] = {}
    body_lines: list[str] = []
    for line in path.read_text().splitlines():
        match = HEADER_LINE.match(line.strip()) if not body_lines else None
        if match:
            header[match.group(1)] = match.group(2).strip()
        elif body_lines or (line.strip() and not line.strip().startswith("--")):
            body_lines.append(line)
    name = header.get("name") or path.stem
    if name != path.stem:
        raise QueryError(f"saved query {path.name} declares name {name!r}; the file must be named {name}.sql")
    if name in fact_tables():
        raise QueryError(f"saved query {name!r} would shadow the fact table of the same name")
    if check_names and name.lower() in sandbox.builtin_table_functions():
        raise QueryError(f"saved query {name!r} would shadow DuckDB's table function of the same name")
    body = "\n".join(body_lines).strip().rstrip(";").strip()
    if not body:
        raise QueryError(f"saved query {path.name} has no SQL after its header")
    return SavedQuery(name, header.get("description", ""), header.get("parameters", ""), body, path)


def discover_saved_queries(directory: Path | None = None, check_names: bool = True) -> list[SavedQuery]:
    """Every ``*.sql`` under ``directory``, recursively, or by default under every result kind's
    saved-analysis folder (its declaration, :mod:`quanta_db.kinds`); names must be unique
    (``check_names``: see :func:`parse_saved_query`)."""
    from quanta_db.kinds import queries_folders

    folders = [Path(directory)] if directory is not None else queries_folders()
    queries = [parse_saved_query(p, check_names) for folder in folders for p in sorted(folder.rglob("*.sql"))]
    seen: dict[str, Path] = {}
    for query in queries:
        if query.name in seen:
            raise QueryError(f"saved query {query.name!r} is defined twice: {seen[query.name]} and {query.path}")
        seen[query.name] = query.path
    return queries


def find_saved_query(con: duckdb.DuckDBPyConnection, name: str) -> dict:
    """The installed saved query ``name`` (name, description, parameters, sql)."""
    result = con.execute(statement("saved_query"), [name])
    row = result.fetchone()
    if row is None:
        raise QueryError(f"unknown saved query {name!r} (see `quanta-db views`)")
    return dict(zip([d[0] for d in result.description], row))


def install_saved_queries(con: duckdb.DuckDBPyConnection, queries: list[SavedQuery], store_root: str) -> None:
    """Install every saved query, drop those no longer shipped, and record ``store_root``.

    Analyses without parameters become views of the lake. Those with parameters are table
    macros, which the lake cannot keep faithfully (DuckLake 1.5 stores a ``NULL`` parameter
    default as the text 'NULL'): only their text is recorded, in ``saved_queries``, and every
    connection that runs queries creates them from it (:func:`install_session_macros`); here
    they are created in this session, where the views may use them. One transaction cannot
    write to both the lake and the in-memory catalog, so each pass creates the macros, then the
    views in one transaction; queries may reference one another, so passes repeat until all
    bind. The list of saved queries is replaced in the last transaction: an install cut short
    is repaired by the next (the list's hashes then differ from the shipped queries').
    """
    obsolete = [name for name, parameters in con.execute(statement("saved_query_parameters")).fetchall()
                if not parameters]

    def install(remaining: list[SavedQuery]) -> list[tuple[SavedQuery, str]]:
        nonlocal obsolete
        failed = _create_each(con, [query for query in remaining if query.parameters])
        views = [query for query in remaining if not query.parameters]
        failed += in_transaction(con, _replace_views, con, views, obsolete)
        obsolete = []  # dropped in the first pass
        return failed

    _in_passes(queries, install)
    in_transaction(con, _record_saved_queries, con, queries, store_root)


def _replace_views(con, views: list[SavedQuery], obsolete: list[str]) -> list[tuple[SavedQuery, str]]:
    for name in obsolete:
        con.execute(drop_saved_view_sql(name))
    return _create_each(con, views)


def _record_saved_queries(con, queries: list[SavedQuery], store_root: str) -> None:
    con.execute(statement("forget_saved_queries"))
    for query in queries:
        con.execute(statement("add_saved_query"),
                    [query.name, query.description, query.parameters, query.body, query.sha256])
    con.execute(statement("set_store_root"), [store_root])


def install_session_macros(con: duckdb.DuckDBPyConnection, sql: str | None = None) -> None:
    """Create the store's parameterised saved analyses as table macros of this connection: all,
    or those that ``sql`` may call (directly or through another), since creating each binds it
    against the lake (a few milliseconds)."""
    macros = session_macros(con)
    create_macros(con, macros if sql is None else called_macros(macros, sql))


def saved_analyses(con: duckdb.DuckDBPyConnection) -> tuple[frozenset[str], list[SavedQuery]]:
    """The names of the store's saved analyses (lower case, as :func:`quanta_db.store.sandbox.table_macros`
    gives them) and its parameterised ones (as :func:`session_macros`), in one read of the catalog;
    none in a store whose schema predates them (it is refused by the schema check)."""
    try:
        rows = con.execute(statement("saved_analyses")).fetchall()
    except duckdb.CatalogException:
        return frozenset(), []
    return analyses(rows)


def analyses(rows: list[tuple[str, str, str]]) -> tuple[frozenset[str], list[SavedQuery]]:
    """:func:`saved_analyses` of the saved analyses' rows (name, parameters, body)."""
    return (frozenset(name.lower() for name, _, _ in rows),
            [SavedQuery(name, "", parameters, body, Path(f"{name}.sql")) for name, parameters, body in rows if parameters])


def session_macros(con: duckdb.DuckDBPyConnection) -> list[SavedQuery]:
    """The store's parameterised saved analyses (created in each session that runs queries)."""
    return analyses(con.execute(statement("saved_macros")).fetchall())[1]


def called_macros(macros: list[SavedQuery], sql: str) -> list[SavedQuery]:
    """The macros whose names occur in ``sql``, or in the body of one that does (transitively)."""
    texts, wanted = [sql.lower()], set()
    while texts:
        text = texts.pop()
        for macro in macros:
            if macro.name not in wanted and macro.name.lower() in text:
                wanted.add(macro.name)
                texts.append(macro.body.lower())
    return [macro for macro in macros if macro.name in wanted]


def create_macros(con: duckdb.DuckDBPyConnection, queries: list[SavedQuery]) -> None:
    """The table macros among ``queries``, created in this connection's in-memory catalog."""
    _create_all(con, [query for query in queries if query.parameters])


def _create_all(con: duckdb.DuckDBPyConnection, queries: list[SavedQuery]) -> None:
    """Create every query (in passes, as they may reference one another)."""
    _in_passes(queries, lambda remaining: _create_each(con, remaining))


def _in_passes(queries: list[SavedQuery], create) -> None:
    """``create`` (one pass over the queries given: those that did not bind, with DuckDB's
    message) again over the failed ones until all bind, as DuckDB binds a query when it is
    created and queries may reference one another; one that binds in no pass is named."""
    remaining = list(queries)
    while remaining:
        failed = create(remaining)
        if len(failed) == len(remaining):
            query, message = failed[0]
            raise QueryError(f"saved query {query.path.name} does not install: {message}")
        remaining = [query for query, _ in failed]


def _create_each(con: duckdb.DuckDBPyConnection, queries: list[SavedQuery]) -> list[tuple[SavedQuery, str]]:
    """Create each query; those that do not bind (yet), with DuckDB's message."""
    failed = []
    for query in queries:
        try:
            con.execute(query.create_sql())
        except duckdb.Error as error:
            failed.append((query, first_line(error)))
    return failed
