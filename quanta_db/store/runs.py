"""Runs: begin → stage Parquet → commit in one short catalog transaction, or abort.

Staged files live in ``staging/<run_id>/`` (outside every table folder). Commit takes the
catalog's write lock, moves the staged files into ``tables/`` (same filesystem: atomic
renames), then in one transaction records them in ``files``, registers them in the lake's
tables, upserts catalog rows and inserts the ``runs`` row. If anything fails the files are moved back
and the transaction rolls back; if the process dies, the catalog never saw the files, so
views read exactly as before and ``quanta-db gc`` removes the leftovers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pickle
import secrets
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from quanta_db.environment import library_versions
from quanta_db.errors import QuantaError, StoreError
from quanta_db.store import catalog, expectations, lake, lineage, liveness
from quanta_db.store.registry import fact_table
from quanta_db.store.sql import equal_condition, quote_ident, statement
from quanta_db.store.tables import conform
from quanta_db.version import __version__

STAGING_DIR = "staging"
TABLES_DIR = "tables"
ARTIFACTS_DIR = "artifacts"
ARTIFACT_TABLE = "artifact"
PARQUET_COMPRESSION = "zstd"
ROW_GROUP_ROWS = 1 << 20
FILE_ROWS = 1 << 24


def params_hash(job: str, params: dict) -> str:
    """sha256 of the job and its canonical (sorted-key) JSON parameters (the job under the key
    "kind", as the runs table names it)."""
    canonical = json.dumps({"kind": job, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_run_id() -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d%H%M%S")
    return f"r{stamp}-{secrets.token_hex(4)}"


def partition_dir(keys: dict[str, object]) -> str:
    """Hive-style ``k=v/...`` with values percent-encoded so names like ``org/model`` stay one level."""
    return "/".join(f"{k}={quote(str(v), safe='')}" for k, v in keys.items())  # pragma: no mutate  ("XX" safe: the same)


@dataclass
class _PartitionWriter:
    """The files of one run for one group of per-file keys (a partition, maybe split further)."""

    table: str
    partition: str
    keys: dict
    directory: Path
    prefix: str
    buffered: list[pa.Table] = field(default_factory=list)
    buffered_rows: int = 0
    registration: int | None = None
    writer: pq.ParquetWriter | None = None
    file_rows: int = 0
    finished: list[tuple[Path, int]] = field(default_factory=list)

    def append(self, data: pa.Table) -> None:
        self.buffered.append(data)
        self.buffered_rows += data.num_rows
        if self.buffered_rows >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.buffered_rows:
            return
        data = pa.concat_tables(self.buffered).combine_chunks()
        self.buffered, self.buffered_rows = [], 0
        if self.writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{self.prefix}-{len(self.finished):05d}.parquet"
            self.writer = pq.ParquetWriter(path, data.schema, compression=PARQUET_COMPRESSION)
            self._path = path
        self.writer.write_table(data, row_group_size=ROW_GROUP_ROWS)
        self.file_rows += data.num_rows
        if self.file_rows >= FILE_ROWS:
            self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.finished.append((self._path, self.file_rows))
            self.writer, self.file_rows = None, 0

    def finish(self) -> list[tuple[Path, int]]:
        self.flush()
        self.close()
        return self.finished


@dataclass(frozen=True)
class StagedFile:
    table: str
    partition: str
    path: Path
    rows: int
    keys: dict | None
    registration: int | None = None  # index into Run._registrations, for files kept only if it is new


@dataclass
class _Registration:
    """A shared entity (e.g. a tokenizer and its vocabulary) that the commit adds only if absent."""

    catalog_table: str
    row: dict
    key: list[str]
    same: list[str]


READY_STATE = "commit.pkl"
ENVIRONMENT_KEY = "environment"
SPLIT_KEY = "split"  # recorded in a split's runs' parameters, not hashed: {"id": ..., "shard": [i, n]}
SPLIT_MARKER_FIELDS = ("split", "shard")


class Run:
    """One ingest: stage writes, then :meth:`commit` or :meth:`abort`.

    Use as a context manager: leaving the block without a commit (an exception, Ctrl-C)
    aborts and deletes the staged files. ``observation`` is what the job saw when it decided
    to run and ``inputs`` the runs it reads from; the commit checks both again (see
    :mod:`quanta_db.store.expectations`).
    """

    def __init__(self, root: Path, job: str, params: dict, device: str | None = None,
                 observation: expectations.Observation | None = None, inputs: list[str] | None = None):
        self.root = Path(root)
        self.job = job
        self.params_hash = params_hash(job, params)
        # Recorded, not hashed: an upgrade of a library does not make an identical job new.
        self.params = {**params, ENVIRONMENT_KEY: library_versions()}
        self.device = device
        self.observation = observation or expectations.Observation(job, self.params_hash, [])
        self.inputs = sorted(set(inputs or []) | self.observation.input_runs)
        self.run_id = new_run_id()
        self.started_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        self.staging = self.root / STAGING_DIR / self.run_id
        self.dropped: dict[str, int] = {}
        self.duplicate_of: str | None = None
        self._writers: dict[tuple[str, str, int | None], _PartitionWriter] = {}
        self._upserts: list[tuple[str, list[dict], list[str]]] = []
        self._replaced: list[tuple[str, dict]] = []
        self._registrations: list[_Registration] = []
        self._artifacts: list[tuple[Path, int]] = []
        self._staged: list[StagedFile] | None = None
        self._state = "open"
        self.staging.mkdir(parents=True)
        liveness.write_marker(self.staging, run_id=self.run_id, kind=job, params_hash=self.params_hash)

    # -- staging -----------------------------------------------------------------------
    def write(self, table: str, data: pa.Table | pa.RecordBatch, _registration: int | None = None) -> int:
        """Stage rows for a fact table (cast to its declared schema); returns rows staged."""
        self._require_open()
        spec = fact_table(table)
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        data = conform(data, spec)
        if data.num_rows == 0:
            return 0
        for keys, part in _split_by_keys(data, spec.file_keys):
            partition = partition_dir({k: keys[k] for k in spec.partition_by})
            group = (table, json.dumps(keys, sort_keys=True, default=str), _registration)  # pragma: no mutate  (one key order)
            writer = self._writers.get(group)
            if writer is None:
                prefix = f"part-{self.run_id}" + (f"-{len(self._writers):03d}" if spec.split_by else "")
                if getattr(self, "_kept_files", None):  # reopened: new names beside the files kept
                    prefix += f"-more{len(self._kept_files)}"
                writer = _PartitionWriter(table, partition, keys, self.staging / table / partition, prefix,
                                          registration=_registration)
                self._writers[group] = writer
            self._staging_guard(writer.append, part)
        return data.num_rows

    def write_artifact(self, name: str, array) -> None:
        """Stage a numpy array as ``artifacts/<run_id>/<name>.npy`` (listed in ``files``)."""
        import numpy as np

        self._require_open()
        path = self.staging / ARTIFACTS_DIR / f"{name}.npy"
        self._staging_guard(lambda: (path.parent.mkdir(exist_ok=True), np.save(path, array)))  # in the run's folder
        self._artifacts.append((path, int(array.shape[0]) if array.ndim else 1))

    def upsert(self, catalog_table: str, rows: list[dict], key: list[str]) -> None:
        """On commit, replace catalog rows matching ``key`` with ``rows`` (no cascade)."""
        self._require_open()
        self._upserts.append((catalog_table, rows, key))

    def register(self, catalog_table: str, row: dict, key: list[str], same: list[str],
                 facts: dict[str, pa.Table]) -> None:
        """On commit, add a shared entity's catalog ``row`` and its ``facts`` only if no row with
        the same ``key`` exists by then. One that does and agrees on the ``same`` columns was
        registered by a concurrent run first: these rows are dropped, not duplicated. One that
        disagrees aborts the commit."""
        self._require_open()
        self._registrations.append(_Registration(catalog_table, row, key, same))
        for table, data in facts.items():
            self.write(table, data, _registration=len(self._registrations) - 1)

    def replace(self, table: str, **where) -> None:
        """On commit, drop the rows of ``table`` matching ``where`` (committed files, for a fact
        table: matched on its per-file keys) and everything derived from them, transitively."""
        self._require_open()
        self._replaced.append((table, where))

    # -- ending --------------------------------------------------------------------------
    def commit(self) -> int:
        """Check what the run assumed, move staged files into place and record everything in
        one transaction; returns rows written (0 when an identical run committed first).

        If the catalog stays locked past the timeout, the run is kept staged and ready: the
        same command run again commits it instead of computing it again.
        """
        return commit_runs([self])[0]

    def keep_for_split(self, split: str, shard: tuple[int, int]) -> None:
        """Keep the staged run ready for ``quanta-db commit --split`` instead of committing it.

        Its heartbeat goes on while this process lives: until its shard's record lists it, the
        run is gc's once its process is gone (a crashed attempt of the shard)."""
        self._require_open()
        self._staged = self._staging_guard(self._finish_writers)
        self.params = {**self.params, SPLIT_KEY: {"id": split, "shard": list(shard)}}
        self._keep_ready(split=split, shard=list(shard))
        liveness.keep_alive(self.staging)

    def abort(self) -> None:
        """Forget everything staged; the catalog was never touched. A run kept ready after its
        commit timed out on the lock stays kept: the same command run again commits it."""
        if self._state == "kept":
            return
        for writer in self._writers.values():
            if writer.writer is not None:
                try:
                    writer.writer.close()
                except OSError:  # its folder is already gone
                    pass
        self._forget_staging()
        self._state = "aborted"

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._state == "open":
            self.abort()

    def reopen(self) -> None:
        """Let a run loaded ready stage more rows (a split's merge adds its merged tables); the
        files it staged before stay staged."""
        self._require_open()
        if self._staged is not None:
            self._kept_files = [f for f in self._staged if f.table != ARTIFACT_TABLE]
            self._staged = None

    # -- ready runs (kept after a lock timeout) ----------------------------------------------
    def _keep_ready(self, **marker_fields) -> None:
        # the writers are finished by now and load_ready starts with none: they need not be kept
        state = {k: v for k, v in self.__dict__.items() if k != "_writers"}  # pragma: no mutate
        (self.staging / READY_STATE).write_bytes(pickle.dumps(state))
        marker = liveness.read_marker(self.staging) or {}
        (self.staging / liveness.MARKER).write_text(json.dumps({**marker, **marker_fields, "ready": True}))
        liveness.let_go(self.staging)
        self._state = "kept"

    @classmethod
    def load_ready(cls, folder: Path) -> Run:
        """A run kept staged by an earlier commit that timed out on the lock."""
        run = cls.__new__(cls)
        run.__dict__.update(pickle.loads((folder / READY_STATE).read_bytes()))
        marker = liveness.read_marker(folder) or {}
        run._writers, run._state = {}, "open"
        liveness.write_marker(run.staging, run_id=run.run_id, kind=run.job, params_hash=run.params_hash,
                              **{k: marker[k] for k in SPLIT_MARKER_FIELDS if k in marker})
        return run

    # -- internals -------------------------------------------------------------------------
    def _require_open(self) -> None:
        if self._state != "open":
            raise QuantaError(f"run {self.run_id} is already {self._state}")

    def _staging_guard(self, action, *args):
        """Run a staging step; a staging folder removed under a live job is one clear line."""
        try:
            return action(*args)
        except OSError:
            if self.staging.is_dir():
                raise
            raise StoreError(f"the staged files of run {self.run_id} were removed while the job ran (by "
                             "`quanta-db gc` on a host that judged it dead?); nothing was committed, "
                             "re-run the command") from None

    def _forget_staging(self) -> None:
        liveness.let_go(self.staging)
        shutil.rmtree(self.staging, ignore_errors=True)

    def _finish_writers(self) -> list[StagedFile]:
        if not self.staging.is_dir():
            raise FileNotFoundError(self.staging)  # pragma: no mutate  (_staging_guard words it)
        staged = getattr(self, "_kept_files", []) + [StagedFile(w.table, w.partition, path, rows, w.keys, w.registration)
                                                     for w in self._writers.values() for path, rows in w.finish()]
        missing = [f.path for f in staged if not f.path.is_file()]
        if missing:
            raise FileNotFoundError(missing[0])
        return staged + [StagedFile(ARTIFACT_TABLE, self.run_id, path, rows, None) for path, rows in self._artifacts]

    def _resolve_registrations(self, con) -> set[int]:
        """Indices of registrations another run made first (their rows are dropped)."""
        skipped = set()
        for index, reg in enumerate(self._registrations):
            where, args = equal_condition({k: reg.row[k] for k in reg.key})
            columns = ", ".join(quote_ident(c) for c in reg.same)
            existing = con.execute(f"SELECT {columns} FROM {quote_ident(reg.catalog_table)} WHERE {where}",
                                   args).fetchone()
            if existing is None:
                continue
            if list(existing) != [reg.row[c] for c in reg.same]:
                raise expectations.ConflictError(
                    f"{reg.catalog_table} {where_text(reg.row, reg.key)} was registered with a different "
                    f"{', '.join(reg.same)} while this job ran; nothing was committed")
            skipped.add(index)
        return skipped

    def _record(self, con, staged: list[StagedFile], rows_written: int, skipped: set[int]) -> lineage.Dropped:
        now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
        dropped = lineage.Dropped()
        for table, where in self._replaced:
            lineage.drop(con, table, where, dropped)
        if self._replaced:  # only a replacement can leave a run without files (32 ms a commit on PostgreSQL)
            _supersede_emptied_runs(con, dropped)
        upserts = self._upserts + [(r.catalog_table, [r.row], r.key) for i, r in enumerate(self._registrations)
                                   if i not in skipped]
        for catalog_table, rows, key in upserts:
            _upsert(con, catalog_table, rows, key)
        for f in staged:
            rel = _relative_dest(f.table, f.partition, f.path)
            keys = None if f.keys is None else json.dumps(f.keys, sort_keys=True, default=str)  # pragma: no mutate
            con.execute(statement("add_file"),
                        [self.run_id, f.table, rel, f.partition, f.rows, (self.root / rel).stat().st_size, now, keys])
            if f.table != ARTIFACT_TABLE:
                con.execute(statement("register_file"), [f.table, (self.root / rel).as_posix()])
        summary = dropped.summary()
        con.execute(
            statement("add_committed_run"),
            [
                self.run_id, self.job, json.dumps(self.params, sort_keys=True, default=str),
                self.params_hash, __version__, socket.gethostname(), self.device,
                self.started_at, now, rows_written, json.dumps(summary) if summary else None,
                json.dumps(self.inputs) if self.inputs else None,
            ],
        )
        return dropped


def commit_runs(runs: list[Run], retry_hint: str = "running the same command again commits it") -> list[int]:
    """Commit staged ``runs`` in one catalog transaction, all or none; rows written by each (0 for
    a run that an identical committed run made a no-op).

    Each run's assumptions are checked inside the transaction, after the runs before it were
    recorded there, so runs of one split see each other as other shards. If the catalog stays
    locked past the timeout, every run is kept staged and ready (``retry_hint`` says how to commit).
    """
    for run in runs:
        run._require_open()
        if run._staged is None:
            run._staged = run._staging_guard(run._finish_writers)
    try:
        connection = catalog.connect(runs[0].root, read_only=False)
        con = connection.__enter__()
    except catalog.CatalogLocked as error:
        for run in runs:
            run._keep_ready()
        names = ", ".join(run.run_id for run in runs)
        raise catalog.CatalogLocked(f"{error}; run {names} is kept staged, and {retry_hint}") from None
    try:
        return _commit_locked(con, runs)
    finally:
        connection.__exit__(None, None, None)


def _commit_locked(con, runs: list[Run]) -> list[int]:
    moved: list[tuple[Path, Path]] = []
    recorded: list[tuple[int, lineage.Dropped] | None] = []
    try:
        con.execute(statement("begin"))
        for run in runs:
            recorded.append(_check_and_record(con, run, moved))
        con.execute(statement("commit"))
    except BaseException:
        _rollback_quietly(con)
        for src, dest in reversed(moved):
            move_file(dest, src)
        raise
    written = []
    for run, entry in zip(runs, recorded):
        if entry is None:  # an identical run committed first
            run.abort()
            written.append(0)
            continue
        rows_written, dropped = entry
        run._state = "committed"
        run.dropped = dropped.summary()
        for rel in dropped.paths:
            (run.root / rel).unlink(missing_ok=True)
        run._forget_staging()
        written.append(rows_written)
    return written


def _check_and_record(con, run: Run, moved: list[tuple[Path, Path]]) -> tuple[int, lineage.Dropped] | None:
    """Inside the open transaction: re-check ``run``'s assumptions, move its files, record it
    (None: an identical run committed first, nothing done)."""
    run.duplicate_of = expectations.duplicate_of(con, run.observation)
    if run.duplicate_of:
        return None
    expectations.check(con, run.observation, run.inputs)
    skipped = run._resolve_registrations(con)
    staged = [f for f in run._staged if f.registration not in skipped]
    rows_written = sum(f.rows for f in staged if f.table != ARTIFACT_TABLE)
    for f in staged:
        dest = run.root / _relative_dest(f.table, f.partition, f.path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        move_file(f.path, dest)
        moved.append((f.path, dest))
    return rows_written, run._record(con, staged, rows_written, skipped)


def where_text(row: dict, key: list[str]) -> str:
    return ", ".join(f"{k}={row[k]!r}" for k in key)


def _supersede_emptied_runs(con, dropped: lineage.Dropped) -> None:
    """Runs left without any committed table file are superseded; their artifacts go too."""
    emptied = [r for (r,) in con.execute(statement("emptied_runs"), [ARTIFACT_TABLE]).fetchall()]
    for run_id in emptied:
        con.execute(statement("supersede_run"), [run_id])
        lineage.unlist_files(con, "table_name = ? AND run_id = ?",  # pragma: no mutate  (SQL: any case)
                             [ARTIFACT_TABLE, run_id], dropped)


def _relative_dest(table: str, partition: str, path: Path) -> str:
    """Where a staged file lives once committed, relative to the store."""
    if table == ARTIFACT_TABLE:
        return f"{ARTIFACTS_DIR}/{partition}/{path.name}"
    return f"{TABLES_DIR}/{table}/{partition}/{path.name}"


def move_file(src: Path, dest: Path) -> None:
    os.replace(src, dest)


def _rollback_quietly(con) -> None:
    try:
        con.execute(statement("rollback"))
    except Exception:  # no transaction was open
        pass


def _upsert(con, table: str, rows: list[dict], key: list[str]) -> None:
    for row in rows:
        where, args = equal_condition({k: row[k] for k in key})
        con.execute(f"DELETE FROM {quote_ident(table)} WHERE {where}", args)
        columns = ", ".join(quote_ident(c) for c in row)
        marks = ", ".join("?" for _ in row)
        con.execute(f"INSERT INTO {quote_ident(table)} ({columns}) VALUES ({marks})",
                    [lake.storable(value) for value in row.values()])


def _split_by_keys(data: pa.Table, partition_by: tuple[str, ...]):
    """Yield (key values, rows) pairs; one pass when the batch holds one group."""
    if not partition_by:
        yield {}, data
        return
    first = {c: data.column(c)[0].as_py() for c in partition_by}
    # a shortcut for a batch of one group (as most are): the grouping below gives the same, slower
    if all(pc.all(pc.equal(data.column(c), pa.scalar(first[c], data.schema.field(c).type))).as_py()  # pragma: no mutate
           for c in partition_by):
        yield first, data
        return
    for keys in data.select(list(partition_by)).group_by(list(partition_by)).aggregate([]).to_pylist():
        mask = None
        for c, v in keys.items():
            term = pc.equal(data.column(c), v)
            mask = term if mask is None else pc.and_(mask, term)
        yield keys, data.filter(mask)
