"""Where a store's catalog lives, and how a DuckDB connection attaches it.

The catalog is a DuckLake (DuckDB's lakehouse format: a metadata database plus Parquet files
with per-file statistics). Its metadata is either a local DuckDB file, ``catalog.ducklake`` in
the store (the default, no server), or a schema of a PostgreSQL database named in the store's
``catalog.json`` (``quanta-db init --catalog postgresql://...``: many hosts share one store).
Either way the store's folder holds the data: the fact tables' files are registered in place
under ``tables/<table>/`` (the lake schema ``tables``, whose path that is, so the lake records
them relative to the store and a moved or differently mounted store still reads), and the catalog
tables, views and macros live in the lake's ``main`` schema.

The DuckLake and postgres extensions are loaded by :mod:`quanta_db.store.extensions`.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

import duckdb

from quanta_db.errors import InputError, StoreError, first_line
from quanta_db.store import extensions
from quanta_db.store.published import READERS_FILE
from quanta_db.store.sql import quote_ident, quote_literal, statement

LAKE = "lake"
METADATA_CATALOG = f"__ducklake_metadata_{LAKE}"
FACT_SCHEMA = "tables"
SESSION_SCHEMA = "memory.main"
LOCAL_FILE = "catalog.ducklake"
REMOTE_FILE = "catalog.json"
LEGACY_FILE = "catalog.duckdb"
CATALOG_ENV = "QUANTA_DB_CATALOG"
POSTGRES_SCHEMES = ("postgresql", "postgres")
# Rows per row group that a writer starts in a local catalog's metadata file. DuckDB's checkpoint
# (on every commit's close) rewrites each row group that changed, and a commit appends to the
# lists of files and their statistics: at DuckDB's 122,880 rows a row group, that rewrote every
# row of them up to that many (45-60 ms of a commit at 25,000 files, 25-30 ms at 1,000); at 2,048
# (the least DuckDB takes) it rewrites at most 2,048.
METADATA_ROW_GROUP_ROWS = 2048


@dataclass(frozen=True)
class Locator:
    """A store's catalog: its local metadata file, or a PostgreSQL URL (without password) and
    the schema holding this store's metadata there."""

    root: Path
    url: str | None = None
    schema: str | None = None

    @property
    def on_postgres(self) -> bool:
        return self.url is not None

    @property
    def metadata_file(self) -> Path:
        return self.root / LOCAL_FILE

    def describe(self) -> str:
        return f"{self.url} (schema {self.schema})" if self.on_postgres else str(self.metadata_file)

    def lock_key(self) -> int:
        """A signed 64-bit key naming this store, for PostgreSQL's advisory locks."""
        digest = hashlib.sha256(f"quanta-db:{self.schema}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def connection_url(self) -> str:
        """The URL to connect with: the stored one, or the same one with its password from
        ``QUANTA_DB_CATALOG`` (libpq also reads ``PGPASSWORD`` and ``~/.pgpass``)."""
        given = os.environ.get(CATALOG_ENV)
        return given if given and without_password(given) == self.url else self.url


def without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = (f"{parts.username}@" if parts.username else "") + host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def locate(root: Path) -> Locator | None:
    """The catalog of the store at ``root``; None when there is none (not a store, or a store in
    the file-catalog format of quanta-db 0.1, see :mod:`quanta_db.store.legacy`)."""
    root = Path(root)
    remote = root / REMOTE_FILE
    if remote.is_file():
        try:
            saved = json.loads(remote.read_text())
            return Locator(root, saved["catalog"], saved["schema"])
        except (ValueError, KeyError, TypeError):
            raise StoreError(f"{remote} is damaged: expected {{\"catalog\": URL, \"schema\": NAME}}") from None
    if (root / LOCAL_FILE).is_file():
        return Locator(root)
    return None


def new_locator(root: Path, catalog_url: str | None) -> Locator:
    """The catalog a new store at ``root`` gets: a local file, or a fresh schema on the
    PostgreSQL database ``catalog_url``; a PostgreSQL catalog is recorded in ``catalog.json``."""
    if not catalog_url:
        return Locator(Path(root))
    if urlsplit(catalog_url).scheme not in POSTGRES_SCHEMES:
        raise InputError(f"--catalog must be a postgresql://USER@HOST[:PORT]/DATABASE URL, got {catalog_url!r}")
    return Locator(Path(root), without_password(catalog_url), f"quanta_{secrets.token_hex(6)}")


def save(locator: Locator) -> None:
    if locator.on_postgres:
        (locator.root / REMOTE_FILE).write_text(json.dumps({"catalog": locator.url, "schema": locator.schema},
                                                          indent=2) + "\n")


def attach(con: duckdb.DuckDBPyConnection, locator: Locator, read_only: bool,
           metadata_file: Path | None = None, snapshot: int | None = None) -> None:
    """Attach the store's lake as ``lake`` and make it the default catalog. ``metadata_file``
    replaces the local metadata file (a private copy for user SQL); ``snapshot`` pins a
    read-only attach to that snapshot of the lake."""
    extensions.load(con, locator.on_postgres)
    con.execute(attach_sql(locator, read_only, metadata_file, snapshot))
    use_lake(con)


def attach_sql(locator: Locator, read_only: bool = True, metadata_file: Path | None = None,
               snapshot: int | None = None) -> str:
    """The ``ATTACH`` statement that opens the store's lake from any DuckDB client (once the
    ducklake extension, and postgres for a PostgreSQL catalog, are loaded). Its data path is
    where the store is now: the lake records its files relative to it, so a store that was
    moved, or is mounted elsewhere on another host, reads the same."""
    if locator.on_postgres:
        target = f"ducklake:postgres:{locator.connection_url()}"
    else:
        target = f"ducklake:{(metadata_file or locator.metadata_file).as_posix()}"
    options = [f"DATA_PATH {quote_literal(locator.root.as_posix() + '/')}", "OVERRIDE_DATA_PATH true"]
    if locator.on_postgres:
        options.append(f"METADATA_SCHEMA {quote_literal(locator.schema)}")
    if read_only:
        options.append("READ_ONLY")  # pragma: no mutate  (SQL: any case)
    elif not locator.on_postgres:
        options.append(f"META_ROW_GROUP_SIZE {METADATA_ROW_GROUP_ROWS}")
    if snapshot is not None:
        options.append(f"SNAPSHOT_VERSION {int(snapshot)}")
    return f"ATTACH {quote_literal(target)} AS {LAKE} ({', '.join(options)})"


def client_sql(locator: Locator) -> str:
    """What any other DuckDB client runs to read the store: the extensions installed from their
    wheels' files and loaded, the lake attached read-only and used. On a local catalog it
    attaches the readers' copy that each commit publishes (:mod:`quanta_db.store.published`),
    not the catalog file: DuckDB locks that file for every commit, so a client attaching it
    would fail while a commit runs, and one that kept it open would hold every commit back.
    Such a client reads the state of its attach, and attaching again shows the commits since (on
    PostgreSQL each of its queries reads the newest state)."""
    installs = [f"INSTALL {quote_literal(extensions.wheel_extension(name).as_posix())}; LOAD {name};"
                for name in extensions.names(locator.on_postgres)]
    readers_copy = None if locator.on_postgres else locator.metadata_file.with_name(READERS_FILE)
    return "\n".join([*installs, f"{attach_sql(locator, metadata_file=readers_copy)};", f"USE {LAKE};"])


def use_lake(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """Resolve names in the lake, then in this connection's in-memory catalog (where the saved
    analyses' macros are); a DuckDB cursor starts without either, so each one needs this."""
    con.execute(f"USE {LAKE}")
    con.execute(f"SET search_path = '{LAKE}.main,{SESSION_SCHEMA}'")
    return con


def cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A new cursor of ``con`` that resolves names as ``con`` does."""
    new = con.cursor()
    try:
        return use_lake(new)
    except BaseException:
        new.close()
        raise


def prepare(con: duckdb.DuckDBPyConnection) -> None:
    """Set a new lake's options (see ``statements/lake_options.sql``), before anything is written
    to it: DuckDB 1.5.5 crashes when the inlining limit changes after rows were inlined."""
    if con.execute(statement("lake_options_set")).fetchone()[0]:
        return
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {FACT_SCHEMA}")  # committed first: options need it
    con.execute(statement("lake_options"))
    con.execute(statement("lake_fact_options"))


REBASED_SUFFIX = "__rebased"


def rebase_catalog_tables(con: duckdb.DuckDBPyConnection, locator: Locator) -> list[str]:
    """Inside a transaction, after the schema changed: make each catalog table that has rows
    inlined in the metadata anew (same columns, same rows), so that all its rows are inlined
    under the newest schema version; the tables made anew (none when nothing is stale).

    Why: DuckLake keeps a catalog table's rows in a metadata table per schema version of the
    table and reads them with the lake's schema as of that version, which a new connection loads
    once more (30-40 ms, like its first load) when it is not the newest. A new store's schema is
    made in several transactions (options, migrations, views, saved analyses), so the rows its
    migrations inlined are at an older version than the store's, and every commit, in its new
    connection, paid that second load (the identical-run lookup: 40-48 ms, 14-18 ms without it, at
    25,000 files). :meth:`Store.init <quanta_db.store.store.Store.init>` calls this on the new,
    nearly empty catalog. Not after a migration of a store in use: the lake keeps every snapshot,
    so the rows made anew would stay twice in the metadata (at 25,000 files, 8 s and 12 MB more
    that each commit then copies for readers); such a store keeps the second load."""
    tables = inlined_catalog_tables(con, locator)
    if not any(stale for _, stale in tables):
        return []
    for name, _ in tables:  # all of them: the rebase is itself a change of the schema
        _make_anew(con, name)
    return [name for name, _ in tables]


def inlined_catalog_tables(con: duckdb.DuckDBPyConnection, locator: Locator) -> list[tuple[str, bool]]:
    """(name, stale) of each catalog table with rows inlined in the metadata: stale when some are
    inlined under another schema version than the newest (see :func:`rebase_catalog_tables`)."""
    query = statement("lake_stale_inlined_tables").format(metadata=metadata_schema(locator))
    return [(name, bool(stale)) for name, stale in con.execute(query).fetchall()]


NOT_NULL = " NOT NULL"


def _make_anew(con: duckdb.DuckDBPyConnection, name: str) -> None:
    columns = con.execute(statement("lake_catalog_table_columns"), [name]).fetchall()
    table, new = (f"main.{quote_ident(n)}" for n in (name, name + REBASED_SUFFIX))
    names = ", ".join(quote_ident(column) for column, *_ in columns)
    definitions = ", ".join(
        f"{quote_ident(column)} {data_type}"
        + (f" DEFAULT {default}" if default is not None else "")  # "NULL" too: the same as none
        + ("" if nullable else NOT_NULL)
        for column, data_type, default, nullable in columns)
    con.execute(f"CREATE TABLE {new} ({definitions})")
    con.execute(f"INSERT INTO {new} ({names}) SELECT {names} FROM {table}")
    con.execute(f"DROP TABLE {table}")
    con.execute(f"ALTER TABLE {new} RENAME TO {quote_ident(name)}")


# The lake writes a catalog row into its metadata database as SQL text, and DuckDB 1.5.5 reads a
# decimal literal of 16-17 significant digits back as a DOUBLE up to one unit in the last place
# off (the digits are rounded to a double before the power of ten divides them). Fifteen digits
# (DBL_DIG) always come back exactly, so that is what a catalog DOUBLE holds: what is read is
# what was written.
DOUBLE_DIGITS = 15
DOUBLE_KEPT_ABOVE = 1e308


def storable(value):
    """``value`` as the catalog keeps it: a float rounded to :data:`DOUBLE_DIGITS` significant
    digits (relative change below 5e-15), anything else unchanged. Magnitudes from
    :data:`DOUBLE_KEPT_ABOVE` up (which rounding could carry past the largest double; DuckDB writes
    them with an exponent and reads them back exactly), infinities and NaN are kept as they are."""
    if not isinstance(value, float) or not abs(value) < DOUBLE_KEPT_ABOVE:  # pragma: no mutate  (<=: 1e308 rounds to itself)
        return value
    return float(f"{value:.{DOUBLE_DIGITS}g}")


def describe_error(locator: Locator, error: Exception) -> str:
    return f"cannot open the catalog {locator.describe()}: {first_line(error)}"


def lake_files(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Absolute paths of every file the lake's current snapshot reads for the fact tables: the
    registered files, and any delete file the lake wrote beside them."""
    return [path for pair in _listed(con) for path in pair if path]


def metadata_schema(locator: Locator) -> str:
    """The schema of the lake's metadata tables, as attached by :func:`attach`, quoted."""
    return f"{quote_ident(METADATA_CATALOG)}.{quote_ident(locator.schema if locator.on_postgres else 'main')}"


def snapshot_identity(con: duckdb.DuckDBPyConnection, locator: Locator, pinned: int | None = None) -> tuple[int, str]:
    """(id, time taken) of the snapshot ``con`` reads: ``pinned``, or the newest in the metadata of
    the lake ``con`` attached (on a local catalog, a private copy's own state). Read as plain
    tables, which spares DuckLake's loading of its schema."""
    # fetchall: a result left unread keeps the connection's transaction (on PostgreSQL, its locks) open
    return tuple(con.execute(statement("lake_latest_snapshot").format(metadata=metadata_schema(locator)), [pinned]).fetchall()[0])


# Entries of ducklake_snapshot_changes that only add rows (as data files, or inlined in the
# metadata), so add no delete file and, but for the saved analyses' table, change nothing a reader
# derives from the catalog.
INSERT_CHANGES = frozenset({"inserted_into_table", "inlined_insert"})
INLINED_INSERT = "inlined_insert"


class Changes(NamedTuple):
    """How a lake went from one snapshot to a later one (:func:`changes`)."""
    only_inserts: bool  # rows added, none removed, saved analyses unchanged
    new_files: str | None  # when only_inserts and each new row of ``files`` is inlined: the
    # metadata table that holds them (quoted, qualified; a relation that decodes it on
    # PostgreSQL), each row with its ``begin_snapshot``


ANEW = Changes(False, None)  # anything may have changed: a state read anew


def changes(con: duckdb.DuckDBPyConnection, locator: Locator, since: tuple[int, str], until: tuple[int, str]) -> Changes:
    """How the lake ``con`` attached went from snapshot ``since`` to ``until`` (see
    :func:`snapshot_identity`), per the DuckLake specification's ``ducklake_snapshot_changes``
    (any entry but an insert is a change) and its inlined data tables."""
    if until[0] < since[0]:
        return ANEW
    metadata = metadata_schema(locator)
    rows = con.execute(statement("lake_changes").format(metadata=metadata),
                       [since[0], until[0], since[0], since[1]]).fetchall()
    found = {kind: value for kind, value, _, _ in rows}
    table_ids = {name: [value for kind, value, _, _ in rows if kind == name] for name in ("saved_queries", "files")}
    if found["same_lake"] == "0":
        return ANEW
    only_inserts, files_inlined = inserted_only(found["changes"], table_ids["saved_queries"], table_ids["files"])
    if not only_inserts:
        return ANEW
    # Rows are inlined into the table of the files table's newest schema (a schema change would
    # have been an entry of its own).
    inlined = sorted((version, holder) for kind, _, holder, version in rows if kind == "files" and holder is not None)
    new_files = _inlined_files(locator, f"{metadata}.{quote_ident(inlined[-1][1])}") if files_inlined and inlined else None
    return Changes(True, new_files)


def inserted_only(entries: str, saved_queries: list | None, files: list | None) -> tuple[bool, bool]:
    """Whether the changes ``entries`` (``ducklake_snapshot_changes``' comma-separated "kind:table
    id" entries) only added rows, none to the saved analyses' table (``saved_queries``: its table
    ids); and whether each row they added to the files table (``files``: its table ids) was inlined."""
    saved_ids, files_ids = ({str(i) for i in ids or []} for ids in (saved_queries, files))
    files_inlined = True
    for entry in filter(None, entries.split(",")):
        kind, _, table_id = entry.partition(":")  # pragma: no mutate  (an insert's entry has one colon)
        if kind not in INSERT_CHANGES or table_id in saved_ids:
            return False, False
        files_inlined &= table_id not in files_ids or kind == INLINED_INSERT
    return True, files_inlined


def _inlined_files(locator: Locator, table: str) -> str:
    """The inlined rows of the files table in ``table`` as a relation of ``begin_snapshot``,
    ``table_name``, ``path`` and ``keys`` (text). On PostgreSQL DuckLake inlines text as bytea,
    which DuckDB reads as BLOB: decoded from UTF-8 here."""
    if not locator.on_postgres:
        return table
    return (f"(SELECT begin_snapshot, decode(table_name) AS table_name, decode(path) AS path, "
            f"decode(keys) AS keys FROM {table})")


def delete_files(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The delete files among :func:`lake_files` (rows the lake dropped from a registered file;
    deletes are normally inlined in the metadata, so there are none)."""
    return [path for paths in delete_files_by_table(con).values() for path in paths]


def delete_files_by_table(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """:func:`delete_files` by fact table (only the tables that have one)."""
    having = [name for (name,) in con.execute(statement("lake_tables_with_deletes")).fetchall()]
    found: dict[str, list[str]] = {}
    for table in having:
        for _, delete_file in _listed(con, [table]):
            if delete_file:
                found.setdefault(table, []).append(delete_file)
    return found


def _listed(con: duckdb.DuckDBPyConnection, tables: list[str] | None = None) -> list[tuple[str, str | None]]:
    from quanta_db.store.registry import fact_tables

    wanted = [table for table in fact_tables() if tables is None or table in tables]
    return [pair for table in wanted for pair in con.execute(statement("lake_files"), [table]).fetchall()]
