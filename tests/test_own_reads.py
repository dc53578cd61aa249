"""The store's own reads keep one attached connection until a commit lands (catalog.reading)."""

from __future__ import annotations

import os
import subprocess
import sys

import duckdb
import pytest

from quanta_db.store import catalog, published
from tests.helpers import commit_vocab

VOCAB = "SELECT count(*) FROM vocab"


@pytest.fixture
def attaches(monkeypatch) -> list[bool]:
    """Every read-only lake attached from now on (one entry each)."""
    made: list[bool] = []
    real = catalog._attached

    def counted(locator, read_only, *args, **kwargs):
        if read_only:
            made.append(True)
        return real(locator, read_only, *args, **kwargs)

    monkeypatch.setattr(catalog, "_attached", counted)
    return made


def count(store, sql: str = VOCAB) -> int:
    with store.read() as con:
        return con.execute(sql).fetchone()[0]


def test_reads_share_one_connection_until_a_commit_lands(store, attaches):
    commit_vocab(store, ["t"], ["a"])
    del attaches[:]
    assert [count(store) for _ in range(3)] == [1, 1, 1]
    assert len(attaches) == 1
    commit_vocab(store, ["u"], ["b"])
    assert count(store) == 2  # the commit is seen: the kept connection was replaced
    assert len(attaches) == 2
    assert count(store) == 2
    assert len(attaches) == 2


def test_a_commit_landing_while_the_connection_opens_is_seen_by_the_next_read(store, attaches, monkeypatch):
    commit_vocab(store, ["t"], ["a"])
    real = catalog._attached
    landed: list[bool] = []

    def then_a_commit(locator, read_only, *args, **kwargs):
        con = real(locator, read_only, *args, **kwargs)
        if read_only and not landed:
            landed.append(True)
            commit_vocab(store, ["u"], ["b"])  # after the stamp was taken, before the connection's use
        return con

    monkeypatch.setattr(catalog, "_attached", then_a_commit)
    count(store)
    assert landed
    assert count(store) == 2


def test_a_read_that_failed_is_closed_not_kept(store, attaches):
    commit_vocab(store, ["t"], ["a"])
    count(store)
    del attaches[:]
    with pytest.raises(duckdb.ParserException), store.read() as con:
        con.execute("SELEC 1")
    assert count(store) == 1
    assert len(attaches) == 1  # the failed read used the kept connection and closed it: a new one


def test_a_read_left_with_its_result_open_is_kept_with_its_transaction_ended(store, attaches):
    commit_vocab(store, ["t", "u"], ["a", "b"])
    with store.read() as con:
        assert con.execute("SELECT token FROM vocab").fetchone() is not None  # one row of two: left open
    del attaches[:]
    assert count(store) == 2
    assert attaches == []  # reused


def test_an_idle_kept_reader_does_not_hold_a_postgres_schema(store, catalog_backend):
    if catalog_backend != "postgresql":
        pytest.skip("the catalog's tables are on PostgreSQL only there")
    import psycopg

    commit_vocab(store, ["t", "u"], ["a", "b"])
    with store.read() as con:
        con.execute("SELECT token FROM vocab").fetchone()
    schema = catalog.locate(store.root).schema
    with psycopg.connect(os.environ["QUANTA_DB_TEST_POSTGRES"], autocommit=True) as session:
        session.execute("SET lock_timeout = '5s'")
        session.execute(f'DROP SCHEMA "{schema}" CASCADE')  # waited on the idle reader's locks before


WRITES_ONCE = ("import sys; from tests.helpers import commit_vocab; from quanta_db.store.store import Store\n"
               "commit_vocab(Store.open(sys.argv[1]), ['other'], ['x'])")


def commit_elsewhere_within_2_s(store) -> None:
    """Another process commits to ``store``, failing if it waits over 2 s for the write lock."""
    env = dict(os.environ, **{catalog.LOCK_TIMEOUT_ENV: "2"})
    subprocess.run([sys.executable, "-c", WRITES_ONCE, str(store.root)], check=True, env=env, cwd=os.getcwd())


def test_a_catalog_read_directly_is_not_kept_open(store, catalog_backend, attaches):
    """Without a readers' copy (a killed writer's marker left, its lock free) a read opens the
    catalog file itself, whose shared lock would hold another process's commit back."""
    if catalog_backend != "duckdb":
        pytest.skip("a local catalog's file lock only")
    commit_vocab(store, ["t"], ["a"])
    metadata_file = catalog.locate(store.root).metadata_file
    metadata_file.with_name(published.WRITING_FILE).touch()
    assert published.readers_file(metadata_file) is None
    del attaches[:]
    assert count(store) == 1
    assert count(store) == 1
    assert len(attaches) == 2  # none kept
    commit_elsewhere_within_2_s(store)
    assert count(store) == 2


class _Connection:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_a_kept_reader_of_an_earlier_stamp_is_closed_and_replaced(monkeypatch):
    from quanta_db.store import kept

    monkeypatch.setattr(catalog, "_own_readers", kept.Idle())
    first = catalog._kept_reader(("store",), (1,), _Connection)
    assert first.stamp == (1,)
    catalog._own_readers.give(("store",), first)
    assert catalog._kept_reader(("store",), (1,), _Connection) is first
    catalog._own_readers.give(("store",), first)
    assert catalog._kept_reader(("other",), (1,), _Connection) is not first  # kept by store
    second = catalog._kept_reader(("store",), (2,), _Connection)
    assert second is not first and second.stamp == (2,)
    assert first.connection.closed and not second.connection.closed


def test_a_read_before_a_closed_writer_publishes_is_replaced_once_it_has(store, catalog_backend, monkeypatch):
    """A read between a writer closing the catalog and publishing the readers' copy opens the old
    copy; the stamp it keeps must be the copy's (which publishing changes), not the catalog
    file's (which stopped changing at the close), or that reader stays on the old state."""
    if catalog_backend != "duckdb":
        pytest.skip("a local catalog's readers' copy only")
    commit_vocab(store, ["t"], ["a"])
    real = published.publish
    seen: list[int] = []

    def read_then_publish(metadata_file):
        if not seen:
            seen.append(count(store))  # the writer has closed; its copy is not yet published
        return real(metadata_file)

    monkeypatch.setattr(published, "publish", read_then_publish)
    commit_vocab(store, ["u"], ["b"])
    assert seen == [1]
    assert count(store) == 2


def test_the_change_stamp_of_a_catalog_read_directly_covers_its_write_ahead_log(store, catalog_backend):
    """Read without a readers' copy, the catalog's state is its file and its ``.wal`` (a writer
    killed before its checkpoint leaves its commits there alone)."""
    if catalog_backend != "duckdb":
        pytest.skip("a local catalog's files only")
    commit_vocab(store, ["t"], ["a"])
    metadata_file = catalog.locate(store.root).metadata_file
    metadata_file.with_name(published.WRITING_FILE).touch()
    before = catalog.change_stamp(store.root)
    metadata_file.with_name(metadata_file.name + ".wal").write_bytes(b"a commit not yet checkpointed")
    assert catalog.change_stamp(store.root) != before


def test_the_owners_unchecked_connection_does_not_hold_a_commit_back(store, catalog_backend):
    """``--unsafe`` SQL reads the readers' copy too: left open (a notebook's engine), a
    connection on the catalog file itself would keep another process's commit waiting."""
    if catalog_backend != "duckdb":
        pytest.skip("a local catalog's file lock only")
    commit_vocab(store, ["t"], ["a"])
    con = catalog.owner_connection(store.root)
    try:
        assert con.execute(VOCAB).fetchone()[0] == 1
        commit_elsewhere_within_2_s(store)
    finally:
        con.close()
    assert count(store) == 2
