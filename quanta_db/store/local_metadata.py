"""A state of a local lake read straight from its metadata file, attached as the plain DuckDB
database it is (:meth:`quanta_db.store.catalog.PrivateCatalog.open_metadata`), without attaching
the lake: the local counterpart of :mod:`quanta_db.store.postgres_metadata`.

Why: DuckLake loads its schema when a lake is first used (30-40 ms, whatever its size), then its
saved analyses and the files a statement reaches are read through it (25-30 ms each at 25,000
files). A process's first query of one partition needs none of it: the state's views,
migrations, saved analyses and the statement's files are rows of the metadata tables (DuckLake
specification 0.3, as DuckDB 1.5.5 writes it: a catalog table's rows are inlined in
``ducklake_inlined_data_<table id>_<schema version>``, each with the snapshots that inserted and
ended it), and the partition's files are then read directly on a connection with nothing
attached. A state this cannot read exactly (delete files, a catalog table's rows in data files,
an inlined table without a column read here) gives None and is read through the lake.
"""

from __future__ import annotations

import duckdb

from quanta_db.store import lake
from quanta_db.store.postgres_metadata import READ_TABLES, State
from quanta_db.store.sql import quote_ident, statement, statement_body


def state(con: duckdb.DuckDBPyConnection, locator: lake.Locator) -> State | None:
    """The state of the local lake whose metadata ``con`` attached as plain tables, or None when
    it must be read through the lake (see the module's text)."""
    metadata = lake.metadata_schema(locator)
    snapshot = lake.snapshot_identity(con, locator)
    # The copy's newest snapshot: no later one is in its file, so any larger id reads the same.
    parameters = {"snapshot": snapshot[0], "tables": list(READ_TABLES)}  # pragma: no mutate  (a later id: the same)
    deletes, catalog_files, views, inlined = con.execute(
        statement("local_lake_state").format(metadata=metadata), parameters).fetchall()[0]
    if deletes or catalog_files:
        return None
    parts: dict[str, list[str]] = {table: [] for table in READ_TABLES}
    for table, holder in inlined:
        read = ("begin_snapshot", *READ_TABLES[table]) if table == "files" else READ_TABLES[table]
        parts[table].append(statement_body("local_inlined_rows").format(
            columns=", ".join(quote_ident(column) for column in read),
            table=f"{metadata}.{quote_ident(holder)}", snapshot=int(snapshot[0])))
    if not all(parts.values()):
        return None
    relations = {table: " UNION ALL ".join(queries) for table, queries in parts.items()}  # pragma: no mutate  (SQL: any case)
    try:  # binds only when each inlined table has every column read here
        migrations, saved = con.execute(statement("local_catalog_rows").format(
            migrations=relations["schema_migrations"], saved=relations["saved_queries"],
            files=relations["files"])).fetchall()[0]
    except duckdb.BinderException:  # e.g. a column renamed by a migration
        return None
    return State(snapshot, frozenset(views),
                 [(row["version"], row["name"], row["sha256"]) for row in migrations],
                 [(row["name"], row["parameters"], row["sql"], row["sha256"]) for row in saved],
                 f"({relations['files']})")

