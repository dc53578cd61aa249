"""A state read off the lake's metadata, nothing attached (quanta_db/store/postgres_metadata.py on
PostgreSQL, local_metadata.py on a local catalog): what it shows and the files a statement reaches
are what the lake shows and finds (tests/test_reach.py has the stores and statements)."""

from __future__ import annotations

import contextlib

import duckdb
import pytest

from quanta_db.store import catalog, copies, lake, local_metadata, postgres_metadata, querying, reach, sandbox, views
from tests.test_reach import CORPORA, NARROWED, _answered_by, _commit_losses, _commit_suite, _files_where, suite_store

__all__ = ["suite_store"]  # a fixture of this module's tests


def _on_postgres(store) -> bool:
    return catalog.locate(store.root).on_postgres


def _read_off(snapshot, plans) -> frozenset[str]:
    """The files ``plans`` reach in a state read off the lake's metadata (postgres_metadata, local_metadata)."""
    if snapshot.locator.on_postgres:
        return postgres_metadata.reached_files(snapshot.locator, snapshot._metadata, snapshot._folder, plans)
    with contextlib.closing(snapshot._probe.cursor()) as cursor:
        return reach.reached_new_files(cursor, snapshot._folder, plans, snapshot._metadata.files, -1, snapshot.state[0])


def _reached_both_ways(store, sql: str) -> tuple[frozenset[str], frozenset[str]]:
    """The files ``sql`` reaches in the store's newest state: read off its metadata, and as the lake finds them."""
    plans = reach.one_scan_plan(sandbox.serialised(sql))
    states = copies.Snapshots(store.root)
    try:
        snapshot = states.current()
        with snapshot.catalog_cursor() as cursor:
            return _read_off(snapshot, plans), reach.reached_files(cursor, snapshot._folder, plans)
    finally:
        states.close()


def _state_read_off(store):
    """The store's newest state read off its metadata (None: it must be read through the lake)."""
    locator = catalog.locate(store.root)
    if locator.on_postgres:
        return postgres_metadata.state(locator, catalog.change_stamp(store.root)[0])
    private = catalog.PrivateCatalog(store.root)
    try:
        with contextlib.closing(private.open_metadata()) as con:
            return local_metadata.state(con, locator)
    finally:
        private.close()


def test_a_first_state_is_read_off_its_metadata_without_attaching_the_lake(suite_store):
    """A process's first state is read off the lake's metadata tables (in PostgreSQL's SQL,
    postgres_metadata; off a local catalog's metadata file, local_metadata): its schema check and
    a partition's files need no attach, and what it reads is what the lake shows."""
    from quanta_db.store import migrations
    from quanta_db.store.sql import statement

    states = copies.Snapshots(suite_store.root)
    try:
        snapshot = states.current()
        assert snapshot._metadata is not None and snapshot._spare is None and snapshot._planner is None
        with catalog.connect(suite_store.root, read_only=True) as con:
            assert snapshot.state == lake.snapshot_identity(con, catalog.locate(suite_store.root))
            lake_facts = (migrations.applied(con), {r[0] for r in con.execute(statement("user_views")).fetchall()},
                          dict(con.execute(statement("saved_query_hashes")).fetchall()))
            assert (snapshot.macros, snapshot._saved) == views.saved_analyses(con)
        assert snapshot.schema_facts() == (list(lake_facts[0]), *lake_facts[1:])
        sql = NARROWED[0][0]
        assert querying.run_on(snapshot, sql).table.equals(suite_store.query(sql, unsafe=True).table)
        (reader,) = snapshot._readers.values()
        assert not reader.attached and reader.paths == _files_where(suite_store, NARROWED[0][2])
        querying.run_on(snapshot, sql)  # the same statement again: the same unattached reader answers it
        assert list(snapshot._readers.values()) == [reader]
        # given an empty parameter list (as a client may send), a statement is read directly all the same
        sql, _, where = NARROWED[2]
        assert querying.run_on(snapshot, sql, []).table.equals(suite_store.query(sql, unsafe=True).table)
        assert [(r.attached, r.paths) for r in snapshot._readers.values()][1:] == [
            (False, _files_where(suite_store, where))]
        assert snapshot._spare is None and snapshot._planner is None  # the lake was never attached
        # a statement that is not one plain scan attaches it, and answers the same
        joined = NARROWED[4][0]
        assert querying.run_on(snapshot, joined).table.equals(suite_store.query(joined, unsafe=True).table)
        assert any(reader.attached for reader in snapshot._readers.values())
    finally:
        states.close()


def test_an_unattached_reader_reads_only_its_files(suite_store):
    states = copies.Snapshots(suite_store.root)
    try:
        snapshot = states.current()
        sql, _, keep = NARROWED[0]
        querying.run_on(snapshot, sql)
        (reader,) = snapshot._readers.values()
        other = sorted(_files_where(suite_store, lambda k: not keep(k)))[0]
        for attack in (f"SELECT * FROM read_parquet('{other}')", "SET enable_external_access = true",
                       f"ATTACH '{suite_store.root}/x.duckdb' AS x", "COPY (SELECT 1) TO '/tmp/quanta-x.csv'",
                       f"SELECT * FROM read_blob('{suite_store.root}/catalog.json')",
                       f"SELECT * FROM read_blob('{suite_store.root}/catalog.ducklake')",
                       f"SELECT * FROM read_blob('{suite_store.root}/catalog.readers.ducklake')",
                       f"SELECT * FROM read_blob('{suite_store.root}/tables/../catalog.ducklake')"):
            with pytest.raises(duckdb.Error):
                reader.connection.execute(attack).fetchall()
    finally:
        states.close()


ODD_CORPORA = ('c/"q"', "ü-1", "c\\d", "c-1 ")


@pytest.fixture
def odd_store(tmp_path, catalog_backend, _store_templates):
    """The suite and a second commit of corpora whose names need quoting or escaping (built once a session)."""
    from quanta_db.store.store import Store
    from tests.helpers import fresh_store

    def build(root):
        store = _commit_suite(Store.init(root))
        _commit_losses(store, [("m-a", 1000, corpus) for corpus in ODD_CORPORA] + [("m-b", 0, "c-1")])

    return fresh_store(_store_templates, "reach_odd", tmp_path / "store", catalog_backend, build)


@pytest.mark.parametrize("condition", [
    "corpus = 'c-1'", "corpus IN ('c-0', 'ü-1')", "corpus = 'c/\"q\"'", "corpus = 'c\\d'", "corpus = 'c-1 '",
    "corpus > 'c-1'", "corpus <= 'c/'", "corpus LIKE 'c-%'", "step IN (0, 2000)", "step < 1000", "step >= 2000",
    "model = 'm-a' AND step = 1000 AND corpus = 'ü-1'", "step = 999.6", "model <> 'm-a'",
    "step = 999.6 AND corpus > 'c-1'",  # a condition after one that is not compared exactly still counts
])
def test_reached_files_read_off_the_metadata_are_those_the_lake_finds(odd_store, condition):
    sql = f"SELECT count(*) FROM token_losses WHERE {condition}"
    read_off, found_by_lake = _reached_both_ways(odd_store, sql)
    assert read_off == found_by_lake
    assert odd_store.query(sql).table.equals(odd_store.query(sql, unsafe=True).table)


def test_a_file_whose_keys_another_writer_wrote_is_reached_as_the_lake_finds_it(suite_store):
    """Keys written without ``json.dumps``'s spaces hold none of the text the test of bytes looks
    for (:func:`quanta_db.store.reach.verbatim_needles`): such a file is left to the conditions on
    its parsed keys, and reached when they hold."""
    import json

    (row,) = [r for r in suite_store.manifest("token_losses").to_pylist()
              if (r["model"], r["step"], r["corpus"]) == ("m-a", 1000, "c-1")]
    relative = row["path"].removeprefix(str(suite_store.root) + "/")
    with suite_store.write() as con:
        (keys,) = con.execute("SELECT keys FROM files WHERE path = ?", [relative]).fetchone()
        compact = json.dumps(json.loads(keys), separators=(",", ":"))
        con.execute("UPDATE files SET keys = ? WHERE path = ?", [compact, relative])
    for condition in ("corpus = 'c-1'", "corpus IN ('c-0', 'c-1') AND model = 'm-a'"):
        read_off, found_by_lake = _reached_both_ways(suite_store, f"SELECT count(*) FROM token_losses WHERE {condition}")
        assert row["path"] in read_off and read_off == found_by_lake


def test_a_state_read_off_its_metadata_reaches_its_own_files_not_later_ones(suite_store):
    sql, _, keep = NARROWED[0]
    plans = reach.one_scan_plan(sandbox.serialised(sql))
    states = copies.Snapshots(suite_store.root)
    try:
        snapshot = states.current()
        shown = _files_where(suite_store, keep)
        _commit_losses(suite_store, [("m-a", 1000, "c-1")])  # a second file of its partition, after the state
        assert _read_off(snapshot, plans) == shown and len(shown) == 1 and len(_files_where(suite_store, keep)) == 2
    finally:
        states.close()


def test_a_catalog_table_altered_by_a_migration_is_read_across_its_schema_versions(suite_store):
    """DuckLake keeps the rows inlined before a table's schema changed in the metadata table of the
    old schema version: both are read (and a state whose tables cannot be read so is read through the lake)."""
    with suite_store.write() as con:
        con.execute("ALTER TABLE files ADD COLUMN note VARCHAR")
    _commit_losses(suite_store, [("m-a", 1000, "c-9")])
    states = copies.Snapshots(suite_store.root)
    try:
        snapshot = states.current()
        assert snapshot._metadata is not None
        sql = "SELECT count(*) AS v FROM token_losses WHERE model = 'm-a' AND step = 1000"
        assert snapshot.reach(sql) == _files_where(suite_store, lambda k: (k["model"], k["step"]) == ("m-a", 1000))
        assert snapshot.reach(sql) == _read_off(snapshot, reach.one_scan_plan(sandbox.serialised(sql)))  # not the lake's
        assert len(snapshot.reach(sql)) == len(CORPORA) + 1
        assert querying.run_on(snapshot, sql).table.equals(suite_store.query(sql, unsafe=True).table)
    finally:
        states.close()
    with suite_store.write() as con:
        con.execute("ALTER TABLE files RENAME COLUMN keys TO file_keys")
    assert _state_read_off(suite_store) is None


def test_a_state_read_off_postgresql_keeps_the_readers_of_partitions_no_commit_touched(suite_store):
    if not _on_postgres(suite_store):
        pytest.skip("a later local state is read through the lake (its new files off the metadata)")
    shared = copies.shared(suite_store.root)
    sql, _, keep = NARROWED[0]
    assert suite_store.query(sql).table.equals(suite_store.query(sql, unsafe=True).table)
    first = shared.current()
    assert first._metadata is not None and not first._metadata.only_new_files
    _commit_losses(suite_store, [("m-c", 0, "c-5")])  # a file the statement does not reach
    second = shared.current()
    assert second is not first and second._metadata.only_new_files
    assert _answered_by(second, sql, None) == first.state[0]  # by the first state's reader
    assert suite_store.query(sql).table.equals(suite_store.query(sql, unsafe=True).table)
    # a statement first asked in this state reaches its files of every commit, not the new ones alone
    first_asked, params, first_asked_keep = NARROWED[2]
    assert second.reach(first_asked, params) == _files_where(suite_store, first_asked_keep) != frozenset()
    _commit_losses(suite_store, [("m-a", 1000, "c-1")])  # a second file of its partition
    third = shared.current()
    assert third.reach(sql) == _files_where(suite_store, keep) and len(third.reach(sql)) == 2
    assert _answered_by(third, sql, None) == third.state[0]
    assert suite_store.query(sql).table.equals(suite_store.query(sql, unsafe=True).table)
    with suite_store.write() as con:  # not only new rows: nothing of an earlier state is kept
        con.execute("INSERT INTO saved_queries (name, sql, sha256) VALUES ('other', 'SELECT 1', 'x')")
    fourth = shared.current()
    assert not fourth._metadata.only_new_files and fourth._earlier == [] and "other" in fourth.macros
    assert _answered_by(fourth, sql, None) == fourth.state[0]
    assert suite_store.query(sql).table.equals(suite_store.query(sql, unsafe=True).table)


def test_a_state_read_off_postgresql_since_itself_has_only_new_files(suite_store):
    """Asked again for the snapshot it was read at (a stamp changed, the lake not), the state is
    the same and may keep every reader of the earlier one (nothing changed since)."""
    if not _on_postgres(suite_store):
        pytest.skip("a local catalog's later state is read through the lake")
    first = _state_read_off(suite_store)
    again = postgres_metadata.state(catalog.locate(suite_store.root), first.snapshot[0], since=first.snapshot)
    assert again.only_new_files and again._replace(only_new_files=False) == first


def test_a_state_read_off_postgresql_since_a_snapshot_of_another_lake_keeps_nothing(suite_store):
    """An earlier state whose snapshot was taken at another time is of another lake (one made
    again under the same name): only rows added since or not, nothing of it is kept."""
    if not _on_postgres(suite_store):
        pytest.skip("a local catalog's later state is read through the lake")
    first = _state_read_off(suite_store)
    _commit_losses(suite_store, [("m-c", 0, "c-5")])  # only new rows
    locator, newest = catalog.locate(suite_store.root), catalog.change_stamp(suite_store.root)[0]
    assert postgres_metadata.state(locator, newest, since=first.snapshot).only_new_files
    assert not postgres_metadata.state(locator, newest, since=(first.snapshot[0], "0")).only_new_files
