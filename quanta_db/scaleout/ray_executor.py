"""``--executor ray``: one Ray task per shard of a split, then one commit by the driver.

Each task runs the job with ``shard=(i, n)`` and ``stage_only`` in a Ray worker (``num_gpus``
each: Ray sets the task's ``CUDA_VISIBLE_DEVICES``, so ``--device auto`` finds its own GPU),
retried when its worker dies (``max_retries``) or CUDA runs out of memory. The driver waits for
all shards with a progress bar, then commits the split in one transaction; a shard that still
fails leaves the others staged and the message names the command that runs it and commits.
"""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

from tqdm.auto import tqdm

from quanta_db.errors import InputError, QuantaError, first_line
from quanta_db.kinds import resolve
from quanta_db.scaleout.plan import ShardPlan, shard_command
from quanta_db.store import splits

DEFAULT_MAX_RETRIES = 3
CONNECT_TIMEOUT_S = 5.0


def run_shard(root: str, job: str, params, index: int, shards: int) -> list[str]:
    """Stage shard ``index`` of ``shards`` of ``params``'s split (in a Ray worker); its run ids."""
    from quanta_db import open_store

    shard_params = dataclasses.replace(params, shard=(index, shards), stage_only=True, progress=False)
    results = resolve(job)(open_store(Path(root)), shard_params)
    return [r.run_id for r in (results if isinstance(results, list) else [results]) if r.details.get("staged")]


def _ray():
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray needs Ray: pip install 'quanta-db[ray]'") from None
    return ray


def connect(address: str | None):
    """The Ray module, connected: to ``address`` ("auto": the running cluster), or to a local
    cluster started here when None and none is connected yet."""
    ray = _ray()
    _check_reachable(address)
    if ray.is_initialized():
        return ray
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise InputError(f"cannot reach a Ray cluster at {address or 'a new local one'}: {first_line(error)}") from None
    return ray


def _check_reachable(address: str | None) -> None:
    """A ``host:port`` that nothing answers on is refused at once (Ray itself retries for minutes)."""
    host, _, port = (address or "").removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as error:
        raise InputError(f"cannot reach a Ray cluster at {address}: {error.strerror or error}") from None


def _retryable():
    import torch

    return [torch.cuda.OutOfMemoryError]


def run_split(store, job: str, command: str, params, plan: ShardPlan, address: str | None = None,
              gpus_per_shard: float | None = None, max_retries: int = DEFAULT_MAX_RETRIES, progress: bool = True,
              cpus_per_shard: float = 1):
    """Run every shard of ``plan`` as a Ray task, then commit the split
    (:func:`quanta_db.store.splits.commit_split`); returns the commit's summary.

    ``gpus_per_shard``: Ray's ``num_gpus`` of each task (default: 1 when the cluster has GPUs, else 0);
    ``cpus_per_shard``: its ``num_cpus`` (Ray gives a task as many torch threads)."""
    ray = connect(address)
    if gpus_per_shard is None:
        gpus_per_shard = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    task = ray.remote(run_shard).options(num_gpus=gpus_per_shard, num_cpus=cpus_per_shard, max_retries=max_retries,
                                         retry_exceptions=_retryable())
    pending = {task.remote(str(store.root), job, params, i, plan.shards): i for i in range(plan.shards)}
    failed: dict[int, BaseException] = {}
    with tqdm(total=plan.shards, unit="shard", desc=plan.split, disable=not progress) as bar:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            try:
                ray.get(done[0])
            except Exception as error:  # a shard that failed after its retries
                failed[index] = error
            bar.update(1)
    if failed:
        index, error = sorted(failed.items())[0]
        again = splits.retry_command(store.root, plan.split, plan.shards, shard_command(store, params, command),
                                     sorted(failed))
        raise QuantaError(f"shard {index}/{plan.shards} of split {plan.split} failed ({_cause(error)}; a dying "
                          f"worker or CUDA out of memory is retried {max_retries} times); nothing was committed, "
                          "the other shards stay staged. "
                          f"Run the failed shard(s) and commit with: {again}")
    return store.commit_split(plan.split, expect=plan.shards)


def _cause(error: BaseException) -> str:
    """The task's own error when Ray wraps it."""
    cause = getattr(error, "cause", None)
    return first_line(cause) if isinstance(cause, BaseException) else first_line(error)
