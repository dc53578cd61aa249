"""Stores of quanta-db 0.1, whose catalog was one DuckDB file (``catalog.duckdb``) with a view
per fact table naming every committed path: :func:`convert` turns one into a lake in place.

Nothing is rewritten: the lake is built beside the old catalog under a temporary name, in one
transaction, from the old catalog's migrations, rows and committed files (registered where they
lie); only when it is complete does it take its name, and the old catalog is kept, renamed
``catalog.duckdb.v0.1``. A conversion that fails or is killed leaves the store as it was.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from quanta_db.errors import StoreError, first_line
from quanta_db.store import extensions, lake, migrations, views
from quanta_db.store.registry import fact_tables
from quanta_db.store.sql import quote_ident, statement

BACKUP_SUFFIX = ".v0.1"
CONVERTING = lake.LOCAL_FILE + ".converting"


def is_legacy(root: Path) -> bool:
    """Whether ``root`` holds a 0.1 catalog and no lake."""
    return (Path(root) / lake.LEGACY_FILE).is_file() and lake.locate(root) is None


def convert(root: Path) -> int:
    """Turn the 0.1 store at ``root`` into a store with a local lake catalog at the same schema
    version (the caller then applies newer migrations); returns the files registered."""
    root = Path(root).resolve()
    old = root / lake.LEGACY_FILE
    work = root / CONVERTING
    for leftover in (work, work.with_name(CONVERTING + ".wal")):
        leftover.unlink(missing_ok=True)
    try:
        source = duckdb.connect(str(old), read_only=True)
    except duckdb.Error as error:
        raise StoreError(f"cannot open {old}: {first_line(error)}") from None
    try:
        applied = migrations.applied(source)
        migrations.pending(source, migrations.discover())  # refuses a newer or edited store
        listed = source.execute(statement("legacy_files")).fetchall()
    finally:
        source.close()
    _require_files(root, listed)
    con = duckdb.connect(config=extensions.connection_config(False))
    try:
        lake.attach(con, lake.Locator(root), read_only=False, metadata_file=work)
        lake.prepare(con)
        code = migrations.discover()
        migrations.apply(con, code[:len(applied)])
        con.execute(f"ATTACH {_literal(old)} AS legacy (READ_ONLY)")
        con.execute(statement("begin"))
        _copy_rows(con)
        views.ensure_fact_tables(con)
        registered = 0
        for table, path in listed:
            if table in fact_tables():
                con.execute(statement("register_legacy_file"), [table, (root / path).as_posix()])
                registered += 1
        con.execute(statement("commit"))
    except duckdb.Error as error:
        con.close()
        work.unlink(missing_ok=True)
        raise StoreError(f"cannot convert {old} to a lake: {first_line(error)}") from None
    except BaseException:
        con.close()
        work.unlink(missing_ok=True)
        raise
    con.close()
    os.replace(work, root / lake.LOCAL_FILE)
    for name in (lake.LEGACY_FILE, lake.LEGACY_FILE + ".wal"):
        if (root / name).exists():
            os.replace(root / name, root / (name + BACKUP_SUFFIX))
    return registered


def _literal(path: Path) -> str:
    return "'" + path.as_posix().replace("'", "''") + "'"


def _storable_sql(column: str) -> str:
    """:func:`quanta_db.store.lake.storable` as a DuckDB expression (NaN compares above all)."""
    return (f"CASE WHEN abs({column}) < {lake.DOUBLE_KEPT_ABOVE!r} "
            f"THEN CAST(printf('%.{lake.DOUBLE_DIGITS}g', {column}) AS DOUBLE) ELSE {column} END AS {column}")


def _require_files(root: Path, listed: list[tuple[str, str]]) -> None:
    missing = [path for _, path in listed if not (root / path).is_file()]
    if missing:
        raise StoreError(f"{root} lists {len(missing)} committed file(s) that are gone (first: {missing[0]}); "
                         "restore them before upgrading")


def _copy_rows(con) -> None:
    """Every row of the old catalog's tables into the lake's tables of the same name, DOUBLE
    values rounded as :func:`quanta_db.store.lake.storable` rounds them."""
    for (table,) in con.execute(statement("legacy_tables")).fetchall():
        name = quote_ident(table)
        con.execute(f"DELETE FROM main.{name}")
        doubles = [c for (c,) in con.execute(statement("legacy_double_columns"), [table]).fetchall()]
        rounded = ", ".join(_storable_sql(quote_ident(c)) for c in doubles)
        replace = f" REPLACE ({rounded})" if doubles else ""
        con.execute(f"INSERT INTO main.{name} BY NAME SELECT *{replace} FROM legacy.main.{name}")
