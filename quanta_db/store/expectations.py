"""What a job assumed when it decided to run, checked again inside its commit.

A job decides at its start ("no identical run is committed", "corpus X does not exist yet",
"the losses of (model, step, corpus) come from runs {R}") and commits minutes or hours later.
Another process may commit in between. The commit holds the catalog's write lock (DuckDB lets
one process open the file for writing), so checking the assumptions again there and
committing is atomic across processes: the first committer wins, and a later one either turns
into the no-op it would have been (an identical run) or aborts with one line, committing
nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from quanta_db.errors import QuantaError
from quanta_db.store.registry import catalog_tables, fact_tables
from quanta_db.store.sql import equal_condition, file_key_condition, quote_ident, statement


class ConflictError(QuantaError):
    """Another run changed what this run was computed from; nothing was committed."""


@dataclass(frozen=True)
class Seen:
    """The runs that held the rows of ``table`` matching ``keys`` when the job decided."""

    table: str
    keys: dict
    run_ids: frozenset[str]
    shard: tuple[int, int] | None = None  # runs of other shards of the same split do not conflict
    is_input: bool = False  # read by the job (else created or replaced by it)


@dataclass
class Observation:
    """A job's view of the catalog at decision time (see the module docstring)."""

    job: str
    params_hash: str
    identical: list[str]  # committed runs with the same parameters, oldest first
    seen: list[Seen] = field(default_factory=list)

    @property
    def previous(self) -> str | None:
        return self.identical[-1] if self.identical else None

    @property
    def input_runs(self) -> set[str]:
        return {r for seen in self.seen if seen.is_input for r in seen.run_ids}


def current_runs(con, table: str, keys: dict) -> frozenset[str]:
    """Run ids that hold the rows of ``table`` (catalog or fact table) matching ``keys`` now."""
    if table in fact_tables():
        condition, args = file_key_condition(keys)
        sql = f"SELECT DISTINCT run_id FROM files WHERE table_name = ? AND {condition}"
        return frozenset(r for (r,) in con.execute(sql, [table, *args]).fetchall())
    if table not in catalog_tables():
        raise KeyError(f"unknown table {table!r}")
    condition, args = equal_condition(keys)
    sql = f"SELECT DISTINCT run_id FROM {quote_ident(table)} WHERE {condition}"
    return frozenset(r for (r,) in con.execute(sql, args).fetchall())


def committed_with_hash(con, params_hash: str) -> list[str]:
    return [r for (r,) in con.execute(
        statement("identical_committed_runs"),
        [params_hash]).fetchall()]


def observe(con, job: str, params_hash: str) -> Observation:
    return Observation(job, params_hash, committed_with_hash(con, params_hash))


def duplicate_of(con, observation: Observation) -> str | None:
    """An identical run committed after the decision: this run would duplicate it."""
    new = [r for r in committed_with_hash(con, observation.params_hash) if r not in observation.identical]
    return new[-1] if new else None


def check(con, observation: Observation, inputs: list[str]) -> None:
    """Raise ConflictError when an input run or a seen entity changed since the decision."""
    if inputs:
        marks = ", ".join("?" for _ in inputs)
        current = {r for (r,) in con.execute(
            f"SELECT run_id FROM runs WHERE status = 'committed' AND run_id IN ({marks})", inputs).fetchall()}
        gone = [r for r in inputs if r not in current]
        if gone:
            raise ConflictError(f"input run {gone[0]} was replaced while this job ran; nothing was committed, "
                                "re-run the command to compute from the current data")
    for seen in observation.seen:
        now = current_runs(con, seen.table, seen.keys)
        added = [r for r in now - seen.run_ids if not _other_shard(con, r, seen.shard)]
        removed = seen.run_ids - now
        if added or removed:
            what = f"{'input ' if seen.is_input else ''}{seen.table} {_describe(seen.keys)}"
            change = f"written by run {sorted(added)[0]}" if added else f"replaced (run {sorted(removed)[0]} is gone)"
            advice = ("re-run the command to compute from the current data" if seen.is_input
                      else "re-run the command; --force replaces")
            raise ConflictError(f"{what} was {change} while this job ran; nothing was committed ({advice})")


def _other_shard(con, run_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether ``run_id`` covers a different shard of the same split as ``shard``."""
    if shard is None:
        return False
    row = con.execute(statement("run_params"), [run_id]).fetchone()
    theirs = json.loads(row[0]).get("shard") if row else None
    return theirs is not None and theirs[1] == shard[1] and theirs[0] != shard[0]


def _describe(keys: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in keys.items())
