"""A job's split into shards: its units in a stable order, and which shard takes each.

Every shardable job lists its natural units (checkpoints × document parts for losses, ...) the
same way in every process; shard ``i`` of ``n`` takes the units at positions ``p`` with
``p % n == i``. The split's name comes from the job's parameters, the units and ``n``
(:func:`quanta_db.store.splits.split_id`), so the shards agree on it without talking.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from quanta_db.params import JobParams, command_args
from quanta_db.store import splits


@dataclass(frozen=True)
class ShardPlan:
    job: str
    split: str
    shards: int
    labels: list[str]   # one per unit, in order
    owners: list[int]   # the shard that takes each unit

    def mine(self, index: int) -> list[int]:
        """Positions of the units shard ``index`` takes."""
        return [position for position, owner in enumerate(self.owners) if owner == index]

    def describe(self) -> list[str]:
        """One line a unit: ``shard i/n: label``, in order."""
        return [f"shard {owner}/{self.shards}: {label}" for label, owner in zip(self.labels, self.owners)]


# How to run a shard, not what the split computes: left out of the split's name.
RUN_FIELDS = ("shard", "stage_only", "progress", "device", "batch_size", "force")


def shard_plan(job: str, params: JobParams, labels: list[str], shards: int) -> ShardPlan:
    """The plan of ``labels`` (the units, in order) over ``shards``, named by every parameter of
    ``params`` that says what is computed (identity or not: a model given by name is not in the
    identity, the model it resolves to is)."""
    named = {f.name: getattr(params, f.name) for f in dataclasses.fields(params) if f.name not in RUN_FIELDS}
    return ShardPlan(job, splits.split_id(job, named, labels, shards), shards, labels, splits.assign(labels, shards))


PARTIAL_STATE = "shard-state.pt"


def shard_of(params: JobParams) -> tuple[int, int] | None:
    """The shard a job takes: its ``shard``, or a split of one shard under ``stage_only`` alone."""
    return params.shard or ((0, 1) if params.stage_only else None)


def shard_run(store, job, shard: tuple[int, int], device: str):
    """The run a shard stages its partial result in: shard 0's is the job's own run (the one the
    split commits, with the job's identity and observation), another shard's a container under
    that identity plus its shard, discarded once the split is committed."""
    if shard[0] == 0:
        return job.begin(device=device)
    return store.begin_run(job.job, {**job.identity, "shard": list(shard)}, device=device)


def shard_positions(n_items: int, shard: tuple[int, int] | None):
    """Positions ``p`` of ``n_items`` (documents) that shard (i, n) takes: p % n == i (all without a shard)."""
    import numpy as np

    positions = np.arange(n_items)
    return positions if shard is None else positions[positions % shard[1] == shard[0]]


def stage_partial(store, run, plan: ShardPlan, shard: tuple[int, int], params: JobParams, command: str,
                  state: dict, merge: str) -> None:
    """Keep ``run`` for the split with ``state`` (a shard's partial result, ``torch.save``-able) in
    its staging folder; ``merge`` ("module:function") turns the shards' runs into the run to commit
    (see :func:`partial_states`)."""
    import torch

    torch.save(state, run.staging / PARTIAL_STATE)
    run.keep_for_split(plan.split, shard)
    record_shard(store, plan, shard[0], [run.run_id], params, command, merge=merge)


def partial_states(runs) -> list[dict]:
    """The states :func:`stage_partial` kept in the split's runs, in shard order."""
    import torch

    return [torch.load(run.staging / PARTIAL_STATE, weights_only=False) for run in runs]


def shard_command(store, params: JobParams, command: str) -> list[str]:
    """The command that runs one shard of ``params``'s split: ``quanta-db --store ROOT ingest
    <command> ... --shard {shard} --stage-only``, the shard as a placeholder."""
    return ["quanta-db", "--store", str(store.root), "ingest", command,
            *command_args(params, {"shard": splits.SHARD_PLACEHOLDER, "stage_only": True})]


def record_shard(store, plan: ShardPlan, index: int, run_ids: list[str], params: JobParams, command: str,
                 merge: str | None = None) -> None:
    """Record that shard ``index`` of ``plan`` staged all its runs (see :mod:`quanta_db.store.splits`);
    ``merge`` ("module:function") turns the shards' runs into the runs to commit."""
    splits.record_shard(store.root, plan.split, (index, plan.shards), plan.job, run_ids,
                        shard_command(store, params, command), merge)
