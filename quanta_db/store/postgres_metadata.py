"""A state of a lake on PostgreSQL read straight from its DuckLake metadata tables, in
PostgreSQL's own SQL on this process's kept session, without attaching the lake.

Why: attaching a lake whose metadata is on PostgreSQL costs 80–100 ms (the extensions, a
connection, the lake's schema), and finding a statement's files through it another 75–95 ms at
25,000 files (DuckLake reads the whole inlined ``files`` table into DuckDB to filter it). A
process's first query of one partition needs neither: the state's views, migrations, saved
analyses and the files the statement reaches are a few rows of the metadata tables, read here in
three round trips of a few milliseconds, and the partition's files are then read directly
(:mod:`quanta_db.store.direct`) on a connection with nothing attached. Anything else attaches
the lake as before (:mod:`quanta_db.store.snapshots`).

What is read follows the DuckLake specification (0.3, as DuckDB 1.5.5 writes it): a catalog
table's rows live in ``ducklake_inlined_data_<table id>_<schema version>`` tables (the store's
option ``data_inlining_row_limit``), each row with the snapshots that inserted and ended it, text
as UTF-8 ``bytea``. A state this cannot read exactly — with delete files, with a catalog table's
rows in data files, or an inlined table without a column read here (a table altered by a
migration) — gives None, and is read through the lake.
"""

from __future__ import annotations

from typing import NamedTuple

from quanta_db.errors import StoreError
from quanta_db.store import kept, lake, reach
from quanta_db.store.sql import quote_ident, statement, statement_body

MIGRATION_COLUMNS = ("version", "name", "sha256")
SAVED_COLUMNS = ("name", "parameters", "sql", "sha256")
FILE_COLUMNS = ("table_name", "path", "keys")
READ_TABLES = {"schema_migrations": MIGRATION_COLUMNS, "saved_queries": SAVED_COLUMNS, "files": FILE_COLUMNS}


class State(NamedTuple):
    """One committed state of the store's catalog, as :func:`state` reads it."""
    snapshot: tuple[int, str]  # (id, time taken), as lake.snapshot_identity gives it
    views: frozenset[str]  # the views of the lake's schema main
    migrations: list[tuple[int, str, str]]  # (version, name, sha256) of each applied migration
    saved: list[tuple[str, str, str, str]]  # (name, parameters, body, sha256) of each saved analysis
    files: str  # a relation of the files table's rows in this state (begin_snapshot, table_name, path, keys)
    # since the ``since`` given to :func:`state`: rows were only added, none to the saved
    # analyses, and each new file inlined (so found by :func:`reached_files` with ``after``)
    only_new_files: bool = False


def state(locator: lake.Locator, snapshot: int, since: tuple[int, str] | None = None) -> State | None:
    """Snapshot ``snapshot`` of the lake on PostgreSQL ``locator``, or None when it must be read
    through the lake (see the module's text); ``since``: an earlier state of it (see
    :attr:`State.only_new_files`)."""
    schema = quote_ident(locator.schema)
    earlier = since if since is not None and since[0] <= snapshot else (snapshot, "")
    try:
        taken, deletes, catalog_files, views, inlined, changes, same_lake, saved_ids, files_ids = kept.read(
            locator, lambda session: session.execute(statement("pg_lake_state").format(schema=schema), {
                "snapshot": snapshot, "schema_name": locator.schema, "tables": list(READ_TABLES),
                "since": earlier[0], "since_taken": earlier[1]}).fetchone())
        if taken is None or deletes or catalog_files:
            return None
        relations = _relations(schema, inlined)
        if relations is None:
            return None
        migrations, saved = kept.read(locator, lambda session: session.execute(
            statement("pg_catalog_rows").format(migrations=relations["schema_migrations"],
                                                saved=relations["saved_queries"]), {"snapshot": snapshot}).fetchone())
    except StoreError:
        return None
    only_inserts, files_inlined = lake.inserted_only(changes, saved_ids, files_ids) if same_lake else (False, False)
    return State((snapshot, taken), frozenset(views),
                 [(row["version"], row["name"], row["sha256"]) for row in migrations],
                 [(row["name"], row["parameters"], row["sql"], row["sha256"]) for row in saved],
                 relations["files"], since is not None and only_inserts and files_inlined)


def _relations(schema: str, inlined: list) -> dict[str, str] | None:
    """For each table of READ_TABLES, the SQL of its rows in a snapshot (``%(snapshot)s``): the union of its
    inlined tables (``inlined``: [table, inlined table, [[column, type], ...]]); None when one
    lacks a column read here."""
    parts: dict[str, list[str]] = {table: [] for table in READ_TABLES}
    for table, holder, columns in inlined:
        types = dict(columns or [])
        if not set(READ_TABLES[table]) <= set(types):
            return None
        if table == "files":  # decoded where it is read (pg_reached_files.sql): text as bytes
            if any(types[column] != "bytea" for column in FILE_COLUMNS):
                return None
            selected = ", ".join(quote_ident(column) for column in ("begin_snapshot", *FILE_COLUMNS))
        else:
            selected = ", ".join(_decoded(column, types[column]) for column in READ_TABLES[table])
        parts[table].append(statement_body("pg_inlined_rows").format(
            columns=selected, table=f"{schema}.{quote_ident(holder)}"))
    if not all(parts.values()):
        return None
    return {table: " UNION ALL ".join(queries) for table, queries in parts.items()}


def _decoded(column: str, kind: str) -> str:
    """``column`` as its value: DuckLake inlines text as UTF-8 bytes."""
    name = quote_ident(column)
    return f"convert_from({name}, 'UTF8') AS {name}" if kind == "bytea" else name


def reached_files(locator: lake.Locator, found: State, folder: str, plans: tuple[reach.ScanPlan, ...],
                  after: int = -1) -> frozenset[str] | None:
    """The paths (``folder`` + the store-relative path) of the committed files the scans of
    ``plans`` may read in state ``found``: every file but those a condition is false for, as
    :func:`quanta_db.store.reach.reached_files` finds them (a file whose key is missing or not of
    the key's JSON type stays in); only those committed after snapshot ``after``; None when
    PostgreSQL could not tell."""
    paths: set[str] = set()
    try:
        for scan in plans:
            conditions, params = _conditions(scan.conditions, reach.key_types(scan.table))
            prefilter, needles = _prefilter(scan.conditions, reach.key_types(scan.table))
            sql = statement("pg_reached_files").format(files=found.files, prefilter=prefilter, conditions=conditions)
            params = {**params, **needles}
            (relative,) = kept.read(
                locator, lambda session, sql=sql, params=params, table=scan.table: session.execute(
                    sql, {**params, "table": table, "snapshot": found.snapshot[0], "after": after}).fetchone())
            paths.update(folder + path for path in relative)
    except StoreError:
        return None
    return frozenset(paths)


def _prefilter(usable: tuple[reach.Condition, ...], types: dict[str, str]) -> tuple[str, dict]:
    """The test of a file's keys as bytes (:func:`quanta_db.store.reach.verbatim_needles`: no JSON
    parsed, where 25,000 files' keys parse in 90 ms) in ``pg_reached_files.sql``, and its parameters."""
    clauses, params = [], {}
    for number, (lead, pairs) in enumerate(reach.verbatim_needles(usable, types)):
        params[f"lead{number}"] = lead.encode()
        params[f"pairs{number}"] = [pair.encode() for pair in pairs]
        clauses.append(f"(position(%(lead{number})s IN keys) = 0 OR EXISTS "
                       f"(SELECT 1 FROM unnest(%(pairs{number})s::bytea[]) AS pair WHERE position(pair IN keys) > 0))")
    return " AND ".join(clauses) or "true", params


def _conditions(usable: tuple[reach.Condition, ...], types: dict[str, str]) -> tuple[str, dict]:
    """The conditions of ``pg_reached_files.sql`` and their parameters: those DuckDB compares
    exactly (:func:`quanta_db.store.reach.exact`), each on the key's value when it is of the
    key's kind (a JSON string; an integer written as one), text compared by its bytes as DuckDB
    compares it (collation "C")."""
    clauses, params = [], {}
    for number, condition in enumerate(usable):
        kind = types.get(condition.key)
        if kind is None or not reach.exact(condition, kind):
            continue
        key, values = f"key{number}", f"values{number}"
        params[key] = condition.key
        if kind == "VARCHAR":
            value, cast = f'(k ->> %({key})s) COLLATE "C"', "text"
            of_kind = f"jsonb_typeof(k -> %({key})s) = 'string'"
            params[values] = list(condition.constants)
        else:
            value, cast = f"(k ->> %({key})s)::numeric", "numeric"
            of_kind = f"jsonb_typeof(k -> %({key})s) = 'number' AND (k ->> %({key})s) ~ '^-?[0-9]+$'"
            params[values] = [int(text) for text in condition.constants]
        right = (f"ANY(%({values})s::{cast}[])" if condition.op == "IN"
                 else f"(%({values})s::{cast}[])[1]")
        op = "=" if condition.op == "IN" else condition.op
        # CASE: PostgreSQL may evaluate either side of an OR first, and a cast of the wrong kind raises
        clauses.append(f"CASE WHEN {of_kind} THEN {value} {op} {right} ELSE true END")
    return " AND ".join(clauses) or "true", params
