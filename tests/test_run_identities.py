"""Job identities are a contract with every existing store: the parameters each job hashes
(``runs.params_hash``) must stay exactly those release 0.1.0 hashed, or a user's store would see
its runs as new and recompute them. ``tests/data/run_identities.json`` holds what that release
stored for every job the demo runs (and the options it does not); a store built now must hold the
same, and running every job again must be "already ingested"."""

from __future__ import annotations

import json

import pytest

from tests.identity_store import GOLDEN, build, normalised_identities


@pytest.fixture(scope="module")
def identity_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("identities").resolve()
    store, _ = build(root / "store")
    return store, root


def test_every_job_hashes_what_release_0_1_0_hashed(identity_store):
    store, root = identity_store
    assert normalised_identities(store, root) == json.loads(GOLDEN.read_text())


def test_every_job_run_again_is_already_ingested(identity_store):
    store, root = identity_store
    before = store.query_arrow("SELECT run_id FROM runs ORDER BY run_id")
    messages = []
    _, extra = build(root / "store", echo=messages.append)
    extra = [r for result in extra for r in (result if isinstance(result, list) else [result])]
    jobs = [m for m in messages if not m.startswith(("building demo inputs", "DM mathematics:"))]
    assert len(jobs) > 30 and all(m.startswith("skipped: ") for m in jobs), jobs
    assert all(r.skipped for r in extra), [r.message for r in extra if not r.skipped]
    assert store.query_arrow("SELECT run_id FROM runs ORDER BY run_id").equals(before)
