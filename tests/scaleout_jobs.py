"""Jobs that misbehave in a Ray worker, for tests/test_scaleout.py (imported by the workers)."""

import os

from quanta_db.results.losses.job import ingest_losses


def losses_dying_once(store, params):
    """Shard 1's first attempt kills its worker (as an out-of-memory kill would). Every attempt notes
    the GPUs Ray gave it."""
    with open(store.root.parent / "visible-gpus", "a") as note:
        note.write(f"{params.shard[0]} {os.environ.get('CUDA_VISIBLE_DEVICES')}\n")
    marker = store.root.parent / "shard-1-died"
    if params.shard[0] == 1 and not marker.exists():
        marker.touch()
        os._exit(1)
    return ingest_losses(store, params)


def losses_failing_shard_2(store, params):
    if params.shard[0] == 2:
        raise RuntimeError("shard 2 always fails")
    return ingest_losses(store, params)
