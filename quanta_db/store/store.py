"""The store: one directory with its catalog (``catalog.ducklake``, or ``catalog.json`` naming one on
PostgreSQL) and ``tables/<table>/...parquet``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from quanta_db.errors import InputError, QueryError, StoreError
from quanta_db.store import catalog, copies, expectations, lake, legacy, liveness, migrations, querying, sandbox, splits, views
from quanta_db.store.registry import catalog_tables, fact_table, fact_tables
from quanta_db.store.runs import ARTIFACT_TABLE, ARTIFACTS_DIR, STAGING_DIR, TABLES_DIR, Run, params_hash
from quanta_db.store.sql import equal_condition, file_key_condition, in_transaction, quote_ident, statement

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class GcReport:
    staging_removed: list[str]
    staging_kept: list[str]
    orphans_removed: list[str]


# (root, migrations, saved queries) -> catalog change stamp, for each schema check this process passed
_SCHEMA_CHECKED: dict[tuple, tuple] = {}


class Store:
    """Handle on a store directory. Holds no connection: each method opens and closes one."""

    def __init__(self, root: Path, background_refresh: bool = False):
        self.root = Path(root).resolve()
        self.background_refresh = background_refresh

    # -- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path, create: bool = False, check: bool = True, background_refresh: bool = False) -> Store:
        """Open an existing store; ``check`` refuses one whose schema differs from this code
        (without it, a store of quanta-db 0.1 opens too, for :meth:`migrate` to upgrade).
        ``background_refresh``: see :meth:`query`."""
        root = Path(path)
        if create and (not root.exists() or (root.is_dir() and not any(root.iterdir()))):
            return cls.init(root)
        if not root.is_dir():
            raise StoreError(f"store {root} does not exist; create it with `quanta-db init`")
        if not (check is False and legacy.is_legacy(root)):
            catalog.locate(root)
        store = cls(root, background_refresh)
        if check:
            store._check_schema_once()
        return store

    @classmethod
    def init(cls, path, catalog_url: str | None = None) -> Store:
        """Create (or upgrade) a store: directories, catalog, migrations, views.

        ``catalog_url``: a ``postgresql://USER@HOST[:PORT]/DATABASE`` whose database holds the
        catalog, for a store that many hosts share (default: ``QUANTA_DB_CATALOG``, else a local
        catalog file). A store that cannot be created leaves nothing behind.
        """
        root = Path(path)
        if root.exists() and not root.is_dir():
            raise StoreError(f"{root} exists and is not a directory")
        existing = lake.locate(root)  # None for a folder that does not exist yet
        if existing is None and root.is_dir() and any(root.iterdir()):
            if legacy.is_legacy(root):
                raise StoreError(f"{root} is a store of quanta-db 0.1; upgrade it with `quanta-db migrate`")
            raise StoreError(f"{root} is not empty and is not a quanta-db store; choose an empty directory")
        if existing is not None:
            if catalog_url and lake.without_password(catalog_url) != existing.url:
                raise StoreError(f"{root} is already a store, with its catalog at {existing.describe()}")
            store = cls(root)
            store.migrate()
            return store
        created = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        try:
            locator = lake.new_locator(root.resolve(), catalog_url or os.environ.get(lake.CATALOG_ENV))
            lake.save(locator)
            (root / TABLES_DIR).mkdir(exist_ok=True)  # pragma: no mutate  (the folder was empty or new)
            store = cls(root)
            store.migrate(locator=locator)  # pragma: no mutate  (None: located again from what save wrote, the same)
            # written while the catalog holds next to no rows (see the function)
            with store.write(locator) as con:  # pragma: no mutate  (None: located again, the same)
                in_transaction(con, lake.rebase_catalog_tables, con, locator)
        except BaseException:
            _undo_init(root, created)
            raise
        return store

    def _check_schema_once(self) -> None:
        """:meth:`check_schema`, skipped when this process already checked the same catalog state
        against the same code: the catalog's change stamp (two file stats locally, one query on
        PostgreSQL) is far cheaper than attaching it. Stamped before checking, so a commit landing
        meanwhile makes the next open check again."""
        # names are checked where saved queries are installed (refresh_views)
        code, saved = migrations.discover(), views.discover_saved_queries(check_names=False)  # pragma: no mutate
        key = (self.root, tuple((m.version, m.sha256) for m in code), tuple((q.name, q.sha256) for q in saved))
        stamp = catalog.change_stamp(self.root)
        if _SCHEMA_CHECKED.get(key) == stamp:
            return
        # read on this process's private copy, which its queries then use (one attach, not two;
        # none when the copy's state was read off PostgreSQL)
        snapshot = copies.shared(self.root).current()
        facts = snapshot.schema_facts()
        if facts is not None:  # pragma: no mutate  (the same check either way, read once)
            self.check_schema(code, saved, facts=facts)  # pragma: no mutate  (code left out: discovered again, the same)
        else:
            with snapshot.catalog_cursor() as con:
                self.check_schema(code, saved, con)  # pragma: no mutate  (con left out: one opened, the same check)
        _SCHEMA_CHECKED[key] = stamp

    def check_schema(self, code: list | None = None, saved: list | None = None, con=None,
                     facts: tuple | None = None) -> int:
        """The store's schema version; raises unless it matches this code (``code``: its
        migrations, ``saved``: its saved queries; default: discovered now). Installs the views of
        result tables and the saved queries a newer quanta-db ships without a schema change.
        ``con``: a read-only connection to the catalog to check on (default: one opened now);
        ``facts``: what it would read there, read already (:meth:`Snapshot.schema_facts`)."""
        code = migrations.discover() if code is None else code
        saved = views.discover_saved_queries() if saved is None else saved
        if facts is not None:
            done, present, installed = facts
            todo = migrations.pending(None, code, done)
        else:
            with (contextlib.nullcontext(con) if con is not None else self.read()) as con:
                todo = migrations.pending(con, code)
                present = {r[0] for r in con.execute(statement("user_views")).fetchall()}
                installed = {} if todo else dict(con.execute(statement("saved_query_hashes")).fetchall())
        version = todo[0].version - 1 if todo else code[-1].version  # pending checked the history is whole
        if todo:
            raise StoreError(
                f"store schema is at version {version}, this quanta-db expects {code[-1].version}; "
                "run `quanta-db migrate`"
            )
        if set(fact_tables()) - present:  # a result table without its view
            try:
                self.refresh_views()
            except StoreError:
                raise StoreError("store views are out of date with this quanta-db; run `quanta-db migrate`") from None
        elif installed != {q.name: q.sha256 for q in saved}:
            try:
                self.refresh_views()
            except StoreError:
                pass  # another process holds the catalog; `quanta-db views --refresh` installs them later
        return version

    # -- connections ---------------------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection to the catalog, for the store's own reads (:func:`catalog.reading`)."""
        with catalog.reading(self.root) as con:
            yield con

    @contextmanager
    def write(self, locator: lake.Locator | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        with catalog.connect(self.root, read_only=False, locator=locator) as con:
            yield con

    def catalog(self) -> str:
        """Where the store's catalog is: its local file, or its PostgreSQL database and schema."""
        return catalog.locate(self.root).describe()

    def engine(self, unsafe: bool = False):
        """A read-only SQLAlchemy engine; every view works with ``pandas.read_sql``.

        Statements are checked as in :meth:`query_arrow` unless ``unsafe``."""
        return catalog.sqlalchemy_engine(self.root, unsafe=unsafe)

    # -- schema --------------------------------------------------------------------------------
    def migrate(self, directory: Path | None = None, locator: lake.Locator | None = None) -> list[migrations.Migration]:
        """Apply pending migrations, then rebuild views and saved queries; a store of quanta-db
        0.1 is first converted to a lake (:func:`quanta_db.store.legacy.convert`)."""
        if locator is None and legacy.is_legacy(self.root):
            legacy.convert(self.root)
        if locator is None and lake.locate(self.root) is None:
            locator = lake.Locator(self.root)  # a folder without a catalog: a new local one
        code = migrations.discover(directory)
        with self.write(locator) as con:
            lake.prepare(con)
            done = migrations.apply(con, code)
            if directory is None:
                migrations.backfill_file_keys(con, self.root)
                self._refresh_views(con)
        return done

    def committed_paths(self, table: str, partition: dict | None = None) -> list[Path]:
        """Absolute paths of the committed files of ``table`` (optionally one partition)."""
        from quanta_db.store.runs import partition_dir

        with self.read() as con:
            if partition:
                rows = con.execute(statement("table_files_in_partition"),
                                   [table, partition_dir(partition)]).fetchall()
            else:
                rows = con.execute(statement("table_files"), [table]).fetchall()
        return [self.root / r[0] for r in rows]

    def client_sql(self) -> str:
        """The SQL any other DuckDB client runs to read this store (:func:`quanta_db.store.lake.client_sql`)."""
        return lake.client_sql(catalog.locate(self.root))

    def manifest(self, table: str) -> pa.Table:
        """The committed files of fact table ``table``: absolute ``path``, the file's key columns
        (as the table declares them) and ``rows``, from the catalog. Other engines read exactly
        these files; a glob over ``tables/`` would also read files no run committed."""
        if table not in fact_tables():
            raise InputError(f"unknown table {table!r}; a manifest lists the files of a fact table "
                             f"({', '.join(sorted(fact_tables()))})")
        spec = fact_table(table)
        with self.read() as con:
            listed = con.execute(statement("table_manifest"), [table]).fetchall()
        keys = [json.loads(text) if text else {} for _, text, _ in listed]
        columns = {"path": pa.array([str(self.root / path) for path, _, _ in listed], pa.string())}
        for name in spec.file_keys:
            columns[name] = pa.array([k.get(name) for k in keys], spec.schema.field(name).type)
        columns["rows"] = pa.array([rows for _, _, rows in listed], pa.int64())
        return pa.table(columns)

    def has_files(self, table: str, **keys) -> bool:
        """Whether ``table`` has a committed file whose per-file keys match ``keys``
        (e.g. ``token_losses`` with model, step and corpus); reads only the catalog."""
        condition, args = file_key_condition(keys)
        with self.read() as con:
            return con.execute(f"SELECT count(*) FROM files WHERE table_name = ? AND {condition}",
                               [table, *args]).fetchone()[0] > 0

    def artifact(self, run_id: str, name: str):
        """The numpy array a run stored as ``name`` (memory-mapped)."""
        import numpy as np

        from quanta_db.errors import InputError

        with self.read() as con:
            row = con.execute(statement("run_file_like"),
                              [ARTIFACT_TABLE, run_id, f"%/{name}.npy"]).fetchone()
        if row is None:
            raise InputError(f"run {run_id!r} has no artifact {name!r}")
        return np.load(self.root / row[0], mmap_mode="r")

    def read_fact(self, table: str, columns: list[str] | None = None, partition: dict | None = None,
                  where=None) -> pa.Table:
        """Read committed rows of a fact table straight from Parquet (no catalog held open).

        ``where`` is a pyarrow.dataset expression; the result is cast to the declared schema.
        """
        import pyarrow.dataset as ds

        spec = fact_table(table)
        paths = self.committed_paths(table, partition)
        wanted = columns or spec.schema.names
        if not paths:
            return spec.schema.empty_table().select(wanted)
        dataset = ds.dataset([str(p) for p in paths], schema=spec.schema)  # Parquet: pyarrow's default format
        return dataset.to_table(columns=wanted, filter=where)

    def migration_list(self) -> list[dict]:
        code = migrations.discover()
        with self.read() as con:
            done = {v: (n, s) for v, n, s in migrations.applied(con)}
            applied_at = dict(con.execute(statement("migration_times")).fetchall())
        return [
            {"version": m.version, "name": m.name, "applied": m.version in done, "applied_at": applied_at.get(m.version)}
            for m in code
        ]

    def refresh_views(self) -> None:
        with self.write() as con:
            self._refresh_views(con)

    def _refresh_views(self, con) -> None:
        in_transaction(con, views.ensure_fact_tables, con)
        views.install_saved_queries(con, views.discover_saved_queries(), self.root.as_posix())

    def saved_queries(self) -> pd.DataFrame:
        with self.read() as con:
            return con.execute(
                statement("saved_query_list")
            ).df()

    def saved_query(self, name: str) -> dict:
        """One installed saved analysis (name, description, parameters, sql); unknown is an error."""
        with self.read() as con:
            return views.find_saved_query(con, name)

    def resolve_source(self, source: str) -> str:
        """SQL for SOURCE: a table or view name becomes ``SELECT *`` from it; anything else is SQL."""
        if not IDENTIFIER.match(source):
            return source
        if not self.relation_exists(source):
            raise QueryError(f"unknown table or view {source!r} (see `quanta-db views` and `quanta-db status`)")
        return f"SELECT * FROM {quote_ident(source)}"

    # -- querying --------------------------------------------------------------------------------
    def query(self, sql: str, params: list | None = None, unsafe: bool = False, time_limit_ms: int | None = None,
              max_rows: int | None = None) -> querying.Result:
        """Run one read-only statement of ad-hoc SQL (:func:`quanta_db.store.querying.run_on`);
        errors become one-line QueryErrors.

        The statement must be a SELECT (or EXPLAIN) and can open no file outside the store's
        tables and artifacts (see :mod:`quanta_db.store.sandbox`); ``unsafe`` lifts both for
        the store's owner (the catalog itself still opens read-only). ``time_limit_ms`` stops it,
        ``max_rows`` keeps that many rows (``truncated`` says whether there were more). It runs
        on this process's newest confined copy of the catalog (:mod:`quanta_db.store.snapshots`),
        taken anew once a commit lands: the query sees every commit that landed before it began.
        With ``background_refresh`` (for a reader that polls, such as a dashboard), a commit of
        another process is shown once its copy was taken in the background, and no query waits
        for it (commits of this process are seen at once either way).
        """
        if unsafe:
            with catalog.connect(self.root, read_only=True) as con:
                views.install_session_macros(con, sql)
                return querying.run_unchecked(con, sql, params, time_limit_ms, max_rows)
        sandbox.precheck(sql)  # hostile SQL is refused before the catalog is opened
        with copies.shared(self.root, self.background_refresh).for_query() as snapshot:
            return querying.run_on(snapshot, sql, params, time_limit_ms, max_rows)

    def query_arrow(self, sql: str, params: list | None = None, unsafe: bool = False) -> pa.Table:
        """:meth:`query`'s rows, as Arrow."""
        return self.query(sql, params, unsafe).table

    def query_df(self, sql: str, params: list | None = None, unsafe: bool = False) -> pd.DataFrame:
        """Like :meth:`query_arrow`, as pandas with nullable integer columns (NULL stays NA)."""
        return arrow_to_pandas(self.query_arrow(sql, params, unsafe))

    def relation_exists(self, name: str) -> bool:
        """Whether ``name`` is a table or view of the catalog."""
        with self.read() as con:
            return con.execute(statement("relation_count"), [name]).fetchone()[0] > 0

    # -- runs ------------------------------------------------------------------------------------
    def begin_run(self, job: str, params: dict, device: str | None = None,
                  observation: expectations.Observation | None = None, inputs: list[str] | None = None) -> Run:
        """Start staging a run. ``observation`` (from :meth:`observe`) is what the job decided on,
        ``inputs`` the run ids it reads from; its commit checks both again. Without an
        observation, one is taken now (an identical run committed meanwhile makes it a no-op)."""
        return Run(self.root, job, params, device=device, observation=observation or self.observe(job, params),
                   inputs=inputs)

    def observe(self, job: str, params: dict) -> expectations.Observation:
        """What a job deciding now sees: the committed runs with identical parameters (its
        ``previous``), to which :meth:`see` adds the entities it creates or replaces.

        A run with these parameters kept staged by an earlier commit that timed out on the
        catalog lock is committed first, so it counts as identical and the job need not recompute.
        """
        wanted = params_hash(job, params)
        self._commit_ready_runs(wanted)
        with self.read() as con:
            return expectations.observe(con, job, wanted)

    def see(self, observation: expectations.Observation, table: str, shard: tuple[int, int] | None = None,
            is_input: bool = False, **keys) -> frozenset[str]:
        """The runs holding ``table``'s rows matching ``keys`` now (empty: absent), recorded in
        ``observation`` so that the commit refuses if they changed (other shards of ``shard``'s
        split excepted). ``is_input``: the job reads these rows; their runs become its inputs."""
        with self.read() as con:
            run_ids = expectations.current_runs(con, table, keys)
        observation.seen.append(expectations.Seen(table, keys, run_ids, tuple(shard) if shard else None, is_input))
        return run_ids

    def _commit_ready_runs(self, wanted_hash: str) -> None:
        staging = self.root / STAGING_DIR
        for folder in sorted(staging.iterdir()) if staging.is_dir() else []:
            marker = liveness.read_marker(folder) or {}
            if not marker.get("ready") or marker.get("params_hash") != wanted_hash or marker.get("split"):
                continue  # a split's runs wait for `commit --split`
            run = Run.load_ready(folder)
            try:
                run.commit()
            except expectations.ConflictError:
                run.abort()  # computed from data that has changed since: compute again

    def resume_dir(self, job: str, params: dict) -> Path:
        """A staging folder where a job with these parameters keeps resumable state between
        attempts; its heartbeat keeps ``gc`` away while the job runs."""
        folder = self.root / STAGING_DIR / f"resume-{job}-{params_hash(job, params)[:16]}"
        liveness.write_marker(folder, job=job)
        return folder

    def split_runs(self, split: str) -> list[str]:
        """Committed runs of a split (``quanta_db.store.splits``)."""
        with self.read() as con:
            return [r for (r,) in con.execute(statement("split_runs"), [split]).fetchall()]

    def commit_split(self, split: str, expect: int | None = None):
        """Commit every staged shard of ``split`` in one transaction (see :mod:`quanta_db.store.splits`)."""
        return splits.commit_split(self, split, expect)

    def committed_runs(self, job: str) -> list[tuple[str, dict]]:
        """(run_id, parameters) of the committed runs of one job, oldest first."""
        with self.read() as con:
            rows = con.execute(
                statement("committed_runs_of_job"), [job]
            ).fetchall()
        return [(run_id, json.loads(params)) for run_id, params in rows]

    def catalog_rows(self, table: str, **equal) -> list[dict]:
        """Rows of a small catalog table matching column = value filters, as dicts."""
        where, args = equal_condition(equal)
        with self.read() as con:
            result = con.execute(f"SELECT * FROM {quote_ident(table)} WHERE {where}", args)
            names = [d[0] for d in result.description]
            return [dict(zip(names, row)) for row in result.fetchall()]

    # -- housekeeping ----------------------------------------------------------------------------
    def status(self, last_runs: int = 10) -> dict:
        with self.read() as con:
            version = migrations.current_version(con)
            tables = con.execute(statement("files_by_table")).df().set_index("table_name")
            catalog_rows = {
                t: con.execute(f"SELECT count(*) FROM {quote_ident(t)}").fetchone()[0] for t in catalog_tables()
            }
            runs = con.execute(statement("last_runs"), [last_runs]).df()
        fact = [
            {
                "table": name,
                "rows": int(tables.loc[name, "rows"]) if name in tables.index else 0,
                "files": int(tables.loc[name, "files"]) if name in tables.index else 0,
                "bytes": int(tables.loc[name, "bytes"]) if name in tables.index else 0,
            }
            for name in [*fact_tables(), ARTIFACT_TABLE]
        ]
        return {"root": str(self.root), "catalog": self.catalog(), "schema_version": version, "fact_tables": fact,
                "catalog_tables": catalog_rows, "last_runs": runs, "staged_splits": splits.staged_splits(self.root)}

    def gc(self, force: bool = False) -> GcReport:
        """Remove staged files of runs that never committed and table files the catalog does not list.

        Holding the write lock while scanning keeps a concurrent commit (which moves files
        under the same lock) from being mistaken for leftovers. A staging folder is kept while
        its owner's heartbeat is fresh, on any host (see :mod:`quanta_db.store.liveness`), and a
        run kept ready to commit after a lock timeout is kept too; ``force`` removes them all.
        """
        removed, kept, orphans = [], [], []
        listed_by_splits = splits.listed_runs(self.root)
        with self.write() as con:
            listed = {row[0] for row in con.execute(statement("all_file_paths")).fetchall()}
            listed |= {Path(path).relative_to(self.root).as_posix() for path in lake.lake_files(con)}
            staging = self.root / STAGING_DIR
            for run_dir in sorted(staging.iterdir()) if staging.is_dir() else []:
                marker = liveness.read_marker(run_dir) or {}
                # A split's run is kept once its shard's record lists it; before, only while its job lives.
                ready = marker.get("ready") and (not marker.get("shard") or run_dir.name in listed_by_splits)
                if not force and (ready or liveness.owner_alive(run_dir)):
                    kept.append(run_dir.name)
                    continue
                shutil.rmtree(run_dir, ignore_errors=True)  # pragma: no mutate  (another gc may remove it first)
                removed.append(run_dir.name)
            for top in (self.root / TABLES_DIR, self.root / ARTIFACTS_DIR):
                for path in sorted(top.rglob("*")) if top.is_dir() else []:  # pragma: no mutate  (rglob finds none)
                    rel = path.relative_to(self.root).as_posix()
                    if path.is_file() and rel not in listed:
                        path.unlink()
                        orphans.append(rel)
                _remove_empty_dirs(top)
        return GcReport(removed, kept, orphans)


def _undo_init(root: Path, created: bool) -> None:
    """Remove what a failed ``init`` made (the folder itself if it made it)."""
    if created:
        shutil.rmtree(root, ignore_errors=True)
        return
    for name in (lake.LOCAL_FILE, lake.LOCAL_FILE + ".wal", lake.REMOTE_FILE):
        (root / name).unlink(missing_ok=True)
    shutil.rmtree(root / TABLES_DIR, ignore_errors=True)


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    """Arrow to pandas keeping integer columns integral when they hold NULLs."""
    nullable = {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
                pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    return table.to_pandas(types_mapper=nullable.get)


def _remove_empty_dirs(top: Path) -> None:
    if not top.is_dir():
        return
    for path in sorted(top.rglob("*"), reverse=True):  # a folder sorts before all it holds: emptied first
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
