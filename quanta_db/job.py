"""What every ingest job shares: the skeleton (skip, stage, commit), its result, input fingerprints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class JobResult:
    run_id: str | None
    rows_written: int
    skipped: bool = False
    message: str = ""
    details: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)  # rows per table its commit replaced


def committed(run, rows_written: int, message: str, details: dict | None = None) -> JobResult:
    """The result of a job whose run ``run`` was committed; when an identical run committed
    first (a concurrent job), the commit was a no-op and the result says so."""
    if run.duplicate_of:
        return JobResult(run.duplicate_of, 0, skipped=True,
                         message=f"already committed by run {run.duplicate_of} (a concurrent identical job)")
    return JobResult(run.run_id, rows_written, dropped=run.dropped, message=message, details=details or {})


def staged(run, rows_staged: int, split: tuple[str, tuple[int, int]], message: str) -> JobResult:
    """The result of a run kept staged for its split's commit (``--stage-only``)."""
    name, (index, shards) = split
    return JobResult(run.run_id, 0, message=f"{message}, staged for split {name} (shard {index}/{shards})",
                     details={"staged": True, "split": name, "rows_staged": rows_staged})


def file_fingerprint(path) -> dict:
    """Identity of an input file for the run's parameter hash: resolved path, size, mtime."""
    path = Path(path).resolve()
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


class Ingest:
    """The skeleton every job shares: find an identical committed run (and skip, unless forced),
    then stage a run under the same identity and observation, commit it, and report.

    ``identity`` is the dict hashed into ``params_hash`` (:meth:`quanta_db.params.JobParams.identity`)."""

    def __init__(self, store, job: str, identity: dict, force: bool = False):
        self.store, self.job, self.identity, self.force = store, job, identity, force
        self.seen = store.observe(job, identity)

    @property
    def previous(self) -> str | None:
        """The identical committed run that makes this job a no-op (None when forced)."""
        return None if self.force else self.seen.previous

    def skipped(self, message: str) -> JobResult:
        return JobResult(self.previous, 0, skipped=True, message=message)

    def begin(self, **run_options):
        """The staged run (a context manager that aborts it on error), with this job's observation."""
        return self.store.begin_run(self.job, self.identity, observation=self.seen, **run_options)

    def replace_identical(self, run, table: str, key: str) -> None:
        """Under --force, the new run's rows replace those of the identical earlier runs."""
        if self.force:
            for earlier in self.seen.identical:
                run.replace(table, **{key: earlier})
