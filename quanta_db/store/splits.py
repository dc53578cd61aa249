"""Splits: one job's work in shards that compute and stage apart, then commit together.

A split is named by its job's parameters and its shard count (:func:`split_id`), so every shard
of it — a Ray task, a SLURM array index, a process started by hand — names the same split without
talking to the others. A shard stages its runs kept ready (``Run.keep_for_split``) and then
writes its record, ``staging/<split>/shard-<i>.json``, listing them: a record is written only once
all of the shard's runs are staged, so a shard that died half-way has none, and a retry of it
replaces the record (the dead attempt's runs are then unlisted, and gc's once its process is
gone). ``commit_split`` commits the runs of all ``n`` records in one catalog transaction, or
nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from quanta_db.errors import InputError, StoreError
from quanta_db.kinds import resolve
from quanta_db.store import liveness
from quanta_db.store.runs import SPLIT_KEY, STAGING_DIR, Run, commit_runs

PREFIX = "split-"
PLANNED = "split.json"
SHARD_PLACEHOLDER = "{shard}"


def split_id(job: str, identity: dict, units: list[str], shards: int) -> str:
    """``split-<12 hex>``: sha256 of the job, its parameters (without the shard), its units and
    the shard count — the same in every process that runs a shard of it."""
    canonical = json.dumps({"job": job, "identity": identity, "units": units, "shards": shards},
                           sort_keys=True, default=str)
    return PREFIX + hashlib.sha256(canonical.encode()).hexdigest()[:12]


def assign(units: list, shards: int) -> list[int]:
    """The shard that takes each unit: round robin in the units' stable order."""
    return [position % shards for position in range(len(units))]


def folder(root: Path, split: str) -> Path:
    return Path(root) / STAGING_DIR / split


def _record_path(root: Path, split: str, index: int) -> Path:
    return folder(root, split) / f"shard-{index:05d}.json"


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _open_folder(root: Path, split: str, job: str) -> Path:
    top = folder(root, split)
    top.mkdir(parents=True, exist_ok=True)
    marker = top / liveness.MARKER
    if not marker.exists():  # gc keeps a split's folder like a ready run's
        marker.write_text(json.dumps({"split": split, "kind": job, "ready": True}))
    return top


def plan_split(root: Path, split: str, job: str, shards: int, command: list[str]) -> Path:
    """Announce a split before any shard has run (an executor or a SLURM submission does), so that
    ``status`` lists it with its missing shards even if every shard fails; its folder."""
    top = _open_folder(root, split, job)
    _write_atomically(top / PLANNED, json.dumps({"split": split, "job": job, "shards": shards, "command": command}))
    return top


def record_shard(root: Path, split: str, shard: tuple[int, int], job: str, run_ids: list[str],
                 command: list[str], merge: str | None = None) -> None:
    """Say that shard ``shard`` of ``split`` staged ``run_ids`` (all of its runs; none when it had
    no units). ``command`` re-runs a shard, with :data:`SHARD_PLACEHOLDER` for its ``i/n``;
    ``merge`` ("module:function", called with the store and the split's runs in shard order) gives
    (the runs to commit, the runs to discard once committed) — for jobs whose shards stage partial
    results, not rows."""
    _open_folder(root, split, job)
    record = {"split": split, "job": job, "shard": list(shard), "runs": run_ids, "command": command,
              "merge": merge, "host": socket.gethostname(), "finished_at": time.time()}
    _write_atomically(_record_path(root, split, shard[0]), json.dumps(record))


def records(root: Path, split: str) -> list[dict]:
    found = []
    for path in sorted(folder(root, split).glob("shard-*.json")):  # none where the folder is not
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # being replaced by a retry: it counts once written
    return found


@dataclass(frozen=True)
class SplitState:
    """A split's staged shards, as its records say."""

    split: str
    job: str
    shards: int
    staged: dict[int, list[str]]  # shard index -> its run ids
    command: list[str]
    merge: str | None = None  # see record_shard

    @property
    def missing(self) -> list[int]:
        return [i for i in range(self.shards) if i not in self.staged]

    def retry_command(self, root: Path, indices: list[int] | None = None) -> str:
        """The one shell command that runs ``indices`` (default: the missing shards) and commits:
        an ``sbatch`` resubmission for a split submitted to SLURM."""
        from quanta_db.scaleout import slurm

        indices = self.missing if indices is None else indices
        if slurm.submitted_with_slurm(folder(root, self.split)):
            return slurm.resubmit_command(folder(root, self.split), indices)
        return retry_command(root, self.split, self.shards, self.command, indices)


def retry_command(root: Path, split: str, shards: int, command: list[str], indices: list[int]) -> str:
    """A shell command that runs shards ``indices`` of ``split`` with ``command`` (its shard as
    :data:`SHARD_PLACEHOLDER`) and then commits the split."""
    run = shlex.join(command).replace(shlex.quote(SHARD_PLACEHOLDER), "$i/" + str(shards))
    commit = shlex.join(["quanta-db", "--store", str(root), "commit", "--split", split, "--expect", str(shards)])
    if len(indices) == 1:
        return f"{run.replace('$i/', f'{indices[0]}/')} && {commit}"
    return f"for i in {' '.join(map(str, indices))}; do {run} || exit 1; done && {commit}"


def state(root: Path, split: str) -> SplitState | None:
    found = records(root, split)
    if not found:
        try:
            planned = json.loads((folder(root, split) / PLANNED).read_text())
        except (OSError, ValueError):
            return None
        return SplitState(split, planned["job"], planned["shards"], {}, planned["command"])
    counts = {r["shard"][1] for r in found}
    if len(counts) != 1 or len({r["job"] for r in found}) != 1:
        raise StoreError(f"the shards staged under {split} disagree on their job or shard count "
                         f"({', '.join(sorted(p.name for p in folder(root, split).glob('shard-*.json')))})")
    return SplitState(split, found[0]["job"], counts.pop(), {r["shard"][0]: r["runs"] for r in found},
                      found[0]["command"], found[0].get("merge"))


def staged_splits(root: Path) -> list[SplitState]:
    """Every split with shards staged and not yet committed."""
    staging = Path(root) / STAGING_DIR
    names = sorted(p.name for p in staging.glob(PREFIX + "*") if p.is_dir())  # none where staging is not
    return [s for s in (state(root, name) for name in names) if s is not None]


def listed_runs(root: Path) -> set[str]:
    """Run ids some shard record lists (gc keeps them)."""
    return {run_id for s in staged_splits(root) for ids in s.staged.values() for run_id in ids}


@dataclass(frozen=True)
class SplitCommit:
    split: str
    runs: list[str]
    rows_written: int
    duplicates: int  # runs an identical committed run had made no-ops


def commit_split(store, split: str, expect: int | None = None) -> SplitCommit:
    """Commit every run of ``split``'s ``n`` shards in one transaction, or refuse with one line
    and change nothing (a shard missing, ``expect`` not its shard count, a run gone)."""
    root = store.root
    found = state(root, split)
    if found is None:
        committed = store.split_runs(split)
        if committed:
            raise InputError(f"split {split} is already committed ({len(committed)} run(s), e.g. {committed[0]})")
        raise InputError(f"no split {split} is staged in {root} (`quanta-db status` lists the staged ones)")
    if expect is not None and expect != found.shards:
        raise InputError(f"split {split} has {found.shards} shards, not the {expect} that --expect says")
    if found.missing:
        raise InputError(f"split {split} lacks shard(s) {', '.join(map(str, found.missing))} of {found.shards}; "
                         f"nothing was committed. Run them with: {found.retry_command(root)}")
    runs = []
    for index in range(found.shards):
        for run_id in found.staged[index]:
            run_folder = Path(root) / STAGING_DIR / run_id
            if not (run_folder / "commit.pkl").is_file():
                raise InputError(f"run {run_id} of shard {index} of split {split} is gone from staging; nothing "
                                 f"was committed. Run the shard again with: {found.retry_command(root, [index])}")
            runs.append(Run.load_ready(run_folder))
    mismatched = [r for r in runs if r.params.get(SPLIT_KEY, {}).get("id") != split or r.job != found.job]
    if mismatched:
        raise InputError(f"run {mismatched[0].run_id} listed by split {split} belongs to another split or job "
                         f"({mismatched[0].job}); nothing was committed")
    discarded: list[Run] = []
    if found.merge:
        runs, discarded = resolve(found.merge)(store, runs)
    written = commit_runs(runs, retry_hint=f"`quanta-db commit --split {split}` again commits it")
    for run in discarded:
        run.abort()
    shutil.rmtree(folder(root, split), ignore_errors=True)  # pragma: no mutate  (a concurrent commit's may go first)
    return SplitCommit(split, [r.run_id for r in runs], sum(written), sum(1 for r in runs if r.duplicate_of))
