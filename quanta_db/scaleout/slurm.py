"""``quanta-db slurm ingest``: a split as a SLURM job array plus a dependent commit job.

The array script runs shard ``$SLURM_ARRAY_TASK_ID`` of ``n`` — the count written into the script,
never ``SLURM_ARRAY_TASK_COUNT``, which a resubmitted index sees as 1 — with ``--stage-only``; the
commit job (``--dependency=afterok``, killed if a shard fails) commits the split. Both scripts are
kept in the split's staging folder, so a failed shard is resubmitted with one ``sbatch`` line
(:func:`resubmit_command`, which ``quanta-db status`` prints). A Kubernetes Indexed Job maps the
same way: its pods run the shard command with ``JOB_COMPLETION_INDEX`` as the shard index.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from quanta_db.errors import InputError
from quanta_db.scaleout.plan import ShardPlan, shard_command
from quanta_db.store import splits

SHARDS_SCRIPT = "shards.sbatch"
COMMIT_SCRIPT = "commit.sbatch"


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    gpus_per_shard: int = 1
    max_parallel: int | None = None
    time: str | None = None


@dataclass(frozen=True)
class Submission:
    split: str
    shards_job: str
    commit_job: str
    resubmit: str  # the command that resubmits the missing shards and the commit


def _header(name: str, folder: Path, options: SlurmOptions, output: str) -> list[str]:
    lines = ["#!/bin/bash", f"#SBATCH --job-name={name}", f"#SBATCH --output={folder / output}"]
    if options.partition:
        lines.append(f"#SBATCH --partition={options.partition}")
    if options.time:
        lines.append(f"#SBATCH --time={options.time}")
    return lines


def scripts(store, plan: ShardPlan, params, command: str, options: SlurmOptions) -> dict[str, str]:
    """The array script and the commit script of ``plan`` (``--dry-run`` prints them)."""
    folder = splits.folder(store.root, plan.split)
    run = shlex.join(shard_command(store, params, command)).replace(
        shlex.quote(splits.SHARD_PLACEHOLDER), f'"${{SLURM_ARRAY_TASK_ID}}/{plan.shards}"')
    array = f"0-{plan.shards - 1}" + (f"%{options.max_parallel}" if options.max_parallel else "")
    shards = _header(f"quanta-{plan.split}", folder, options, "shard-%a-%A.out") + [f"#SBATCH --array={array}"]
    if options.gpus_per_shard:
        shards.append(f"#SBATCH --gres=gpu:{options.gpus_per_shard}")
    shards += ["set -euo pipefail", "# the shard index is passed explicitly: a resubmitted index sees a task count of 1",
               f"exec {run} --no-progress"]
    commit = _header(f"quanta-{plan.split}-commit", folder, options, "commit-%j.out") + [
        "set -euo pipefail",
        "exec " + shlex.join(["quanta-db", "--store", str(store.root), "commit", "--split", plan.split,
                              "--expect", str(plan.shards)])]
    return {SHARDS_SCRIPT: "\n".join(shards) + "\n", COMMIT_SCRIPT: "\n".join(commit) + "\n"}


def _sbatch(*args: str) -> str:
    """Run sbatch; the job id it prints (``--parsable``), or one line saying why not."""
    done = subprocess.run(["sbatch", "--parsable", *args], capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or [f"exit status {done.returncode}"]
        raise InputError(f"sbatch refused the job: {lines[-1].strip()}")
    return done.stdout.strip().split(";")[0]


def submit(store, plan: ShardPlan, params, command: str, options: SlurmOptions) -> Submission:
    """Write both scripts into the split's folder and submit them: the array, then the commit
    job after it (``afterok``; SLURM kills it when a shard fails)."""
    if shutil.which("sbatch") is None:
        raise InputError("quanta-db slurm needs SLURM's sbatch on PATH (this host is no SLURM submit host)")
    fresh = not splits.folder(store.root, plan.split).exists()
    folder = splits.plan_split(store.root, plan.split, plan.job, plan.shards, shard_command(store, params, command))
    for name, text in scripts(store, plan, params, command, options).items():
        (folder / name).write_text(text)
    try:
        shards_job = _sbatch(str(folder / SHARDS_SCRIPT))
    except InputError:
        if fresh:  # refused: leave no trace of the split
            shutil.rmtree(folder, ignore_errors=True)
        raise
    commit_job = _sbatch(f"--dependency=afterok:{shards_job}", "--kill-on-invalid-dep=yes", str(folder / COMMIT_SCRIPT))
    return Submission(plan.split, shards_job, commit_job, resubmit_command(folder, list(range(plan.shards))))


def resubmit_command(folder: Path, indices: list[int]) -> str:
    """One shell line that resubmits array indices ``indices`` and a commit job after them."""
    shards = shlex.quote(str(folder / SHARDS_SCRIPT))
    commit = shlex.quote(str(folder / COMMIT_SCRIPT))
    return (f"job=$(sbatch --parsable --array={','.join(map(str, indices))} {shards}) && "
            f"sbatch --parsable --dependency=afterok:${{job%%;*}} --kill-on-invalid-dep=yes {commit}")


def submitted_with_slurm(folder: Path) -> bool:
    return (folder / SHARDS_SCRIPT).is_file() and (folder / COMMIT_SCRIPT).is_file()
