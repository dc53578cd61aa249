"""Job identities are a contract with every existing store: the parameters each job hashes
(``runs.params_hash``) must stay exactly those release 0.1.0 hashed, or a user's store would see
its runs as new and recompute them. ``tests/data/run_identities.json`` holds what that release
stored for every job the demo runs (and the options it does not); a store built now must hold the
same, and running every job again must be "already ingested"."""

from __future__ import annotations

import ast
import json

import pytest

from quanta_db.store.registry import catalog_tables, fact_tables
from quanta_db.store.store import Store
from tests.identity_store import GOLDEN, build, normalised_identities
from tests.release_store import build_with_release, legacy_rows, release_checkout

UPGRADED = {}  # what the release's catalog held, for the upgrade test


@pytest.fixture(scope="module")
def identity_store(tmp_path_factory):
    """Built by the release's code and upgraded with ``migrate`` where the repository's history
    holds the release (a git checkout), else by today's code."""
    root = tmp_path_factory.mktemp("identities").resolve()
    release = release_checkout(root / "release")
    if release is None:
        store, _ = build(root / "store")
        return store, root
    build_with_release(release, root / "store")
    UPGRADED["before"] = {**legacy_rows(root / "store", catalog_tables(), round_doubles=True),
                          **legacy_rows(root / "store", fact_tables())}
    Store.open(root / "store", check=False).migrate()
    return Store.open(root / "store"), root


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


def test_a_store_of_the_release_upgrades_and_reads_the_same_rows(identity_store):
    store, root = identity_store
    if "before" not in UPGRADED:
        pytest.skip("not a git checkout holding the release's commit: the store was built by today's code")
    assert (root / "store" / "catalog.duckdb.v0.1").is_file() and not (root / "store" / "catalog.duckdb").exists()
    from quanta_db.store.catalog import connect

    with connect(store.root, read_only=True) as con:
        for table, rows in UPGRADED["before"].items():
            now = sorted(map(repr, con.execute(f'SELECT * FROM "{table}"').fetchall()))
            if table == "saved_queries":  # the upgrade installs today's analyses: the release's by name, and more
                names = {row[0] for row in con.execute('SELECT name FROM saved_queries').fetchall()}
                assert {ast.literal_eval(row)[0] for row in rows} <= names, table
            else:
                assert now == rows, table
