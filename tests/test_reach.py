"""User SQL confined to the files its statement reaches (quanta_db/store/reach.py): the files a
statement's reader may open are checked against the committed files' own keys (the manifest,
filtered in Python), every answer against the owner's unconfined connection, and a reader that
is too narrow must still answer, on every committed file."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from quanta_db.store import catalog, copies, lake, postgres_metadata, querying, reach, sandbox, snapshots

MODELS, STEPS, CORPORA, ROWS = ("m-a", "m-b"), (0, 1000, 2000), ("c-0", "c-1", "c-2"), 20


def _losses(model: str, step: int, corpus: str, run_id: str, rng) -> pa.Table:
    return pa.table({"model": pa.repeat(model, ROWS), "step": pa.repeat(step, ROWS), "corpus": pa.repeat(corpus, ROWS),
                     "doc_id": np.arange(ROWS, dtype=np.int64) // 5, "pos": (np.arange(ROWS) % 5 + 1).astype(np.int32),
                     "loss_nats": rng.gamma(2.0, 1.5, ROWS).astype(np.float32), "run_id": pa.repeat(run_id, ROWS)})


def _commit_suite(store):
    """One committed file per (model, step, corpus): 18 files of token_losses."""
    rng = np.random.default_rng(0)
    with store.begin_run("reach_test", {"n": 1}) as run:
        for model in MODELS:
            for step in STEPS:
                for corpus in CORPORA:
                    run.write("token_losses", _losses(model, step, corpus, run.run_id, rng))
        run.commit()
    return store


@pytest.fixture
def suite_store(tmp_path, catalog_backend, _store_templates):
    from quanta_db.store.store import Store
    from tests.helpers import fresh_store

    return fresh_store(_store_templates, "reach_suite", tmp_path / "store", catalog_backend,
                       lambda root: _commit_suite(Store.init(root)))


def _files_where(store, keep) -> frozenset[str]:
    """The committed token_losses files whose recorded keys satisfy ``keep`` (absolute paths)."""
    return frozenset(row["path"] for row in store.manifest("token_losses").to_pylist() if keep(row))


# (statement, parameters, which files it must be confined to: a test of a file's keys)
NARROWED = [
    ("SELECT avg(loss_nats) AS v FROM token_losses WHERE model = 'm-a' AND step = 1000 AND corpus = 'c-1'", None,
     lambda k: (k["model"], k["step"], k["corpus"]) == ("m-a", 1000, "c-1")),
    ("SELECT sum(loss_nats) AS v FROM token_losses WHERE model = ? AND step >= 1000", ["m-b"],
     lambda k: k["model"] == "m-b" and k["step"] >= 1000),
    ("SELECT count(*) AS v FROM token_losses WHERE corpus IN ('c-0', 'c-2') AND step BETWEEN 500 AND 1500", None,
     lambda k: k["corpus"] in ("c-0", "c-2") and 500 <= k["step"] <= 1500),
    ("SELECT count(*) AS v FROM token_losses WHERE corpus LIKE 'c-1%' AND 1000 < step", None,
     lambda k: k["corpus"].startswith("c-1") and k["step"] > 1000),
    ("SELECT count(*) AS v FROM token_losses a JOIN token_losses b USING (doc_id, pos, corpus) "
     "WHERE a.model = 'm-a' AND a.step = 0 AND b.model = 'm-b' AND b.step = 2000", None,
     lambda k: (k["model"], k["step"]) in (("m-a", 0), ("m-b", 2000))),
    ("SELECT avg(value) AS v FROM token_pane_loss('c-2', 'm-a', 2000)", None,  # a saved analysis (a macro)
     lambda k: (k["model"], k["step"], k["corpus"]) == ("m-a", 2000, "c-2")),
    ("EXPLAIN ANALYZE SELECT avg(loss_nats) FROM token_losses WHERE model = 'm-b' AND step = 0", None,
     lambda k: (k["model"], k["step"]) == ("m-b", 0)),
    ("SELECT count(*) AS v FROM token_losses t WHERE t.corpus LIKE 'c-2%' AND t.model = 'm-b'", None,
     lambda k: k["corpus"].startswith("c-2") and k["model"] == "m-b"),  # qualified by the table's alias
    ("SELECT count(*) AS v FROM token_losses WHERE corpus BETWEEN 'c-1' AND 'c-2' AND model = 'm-a'", None,
     lambda k: "c-1" <= k["corpus"] <= "c-2" and k["model"] == "m-a"),  # a text key between two strings
    ("SELECT count(*) AS v FROM Token_Losses T WHERE T.Model = 'm-b' AND \"STEP\" = 0", None,
     lambda k: (k["model"], k["step"]) == ("m-b", 0)),  # names in any case, quoted or not
]
# Filters the lake cannot prune files by: every file of the table stays allowed.
WHOLE_TABLE = [
    "SELECT count(*) AS v FROM token_losses WHERE model = 'm-a' OR step = 0",
    "SELECT avg(loss_nats) AS v FROM token_losses WHERE lower(model) = 'm-a'",
    "SELECT max(loss_nats) AS v FROM token_losses WHERE loss_nats > 1.0",
    "SELECT count(*) AS v FROM token_losses WHERE model = 'm-a'') OR true --'",  # quotes stay a constant
]


def _fallbacks(monkeypatch) -> list:
    taken = []
    real = snapshots.Snapshot.reader

    def reader(self, sql, params=None, everything=False, **how):
        taken.append(everything)
        return real(self, sql, params, everything, **how)

    monkeypatch.setattr(snapshots.Snapshot, "reader", reader)
    return taken


@pytest.mark.parametrize("case", range(len(NARROWED)))
def test_a_statement_is_confined_to_the_files_its_filters_reach(suite_store, monkeypatch, case):
    sql, params, keep = NARROWED[case]
    snapshot = copies.shared(suite_store.root).current()
    assert snapshot.reach(sql, params) == _files_where(suite_store, keep)
    taken = _fallbacks(monkeypatch)
    confined = suite_store.query(sql, params).table
    if not sql.startswith("EXPLAIN"):
        assert confined.equals(suite_store.query(sql, params, unsafe=True).table)
    assert taken == [False]  # answered by the narrowed reader, never retried on every file
    # in use while it answered, given back after: idle, so the least recent ones can be closed
    assert all(reader.users == 0 for reader in copies.shared(suite_store.root).current()._readers.values())


@pytest.mark.parametrize("sql", WHOLE_TABLE)
def test_filters_the_lake_cannot_prune_by_leave_every_file_allowed(suite_store, sql):
    snapshot = copies.shared(suite_store.root).current()
    reached = snapshot.reach(sql)
    assert reached is None or reached == _files_where(suite_store, lambda k: True) or sql.endswith("--'")
    assert suite_store.query(sql).table.equals(suite_store.query(sql, unsafe=True).table)


def test_a_reader_too_narrow_for_the_lake_is_retried_on_every_committed_file(suite_store, monkeypatch):
    # a qualified name: read through the lake, not directly (quanta_db/store/direct.py reads what reach found)
    sql = "SELECT count(*) AS v FROM main.token_losses WHERE model = 'm-a' AND step = 1000"
    for module, name in ((reach, "reached_files"), (reach, "reached_new_files"), (postgres_metadata, "reached_files")):
        monkeypatch.setattr(module, name, lambda *args, **kwargs: frozenset())  # as if the catalog pruned more than the lake
    taken = _fallbacks(monkeypatch)
    rows = "SELECT doc_id, pos FROM main.token_losses WHERE model = 'm-b' AND step = 0 ORDER BY ALL"
    limited = suite_store.query(rows, max_rows=3)  # the retry keeps the row limit
    assert limited.table.equals(suite_store.query(rows, unsafe=True).table.slice(0, 3)) and limited.truncated
    assert taken == [False, True]
    assert suite_store.query_df(sql)["v"].tolist() == [ROWS * len(CORPORA)]  # on the reader of every file, kept


def test_a_statement_that_reads_files_by_name_gets_every_committed_file(suite_store):
    path = suite_store.committed_paths("token_losses")[0]
    sql = f"SELECT count(*) AS v FROM read_parquet('{path}')"
    assert copies.shared(suite_store.root).current().reach(sql) is None  # planning needs the file itself
    assert suite_store.query_df(sql)["v"].tolist() == [ROWS]
    with pytest.raises(Exception, match="Permission"):  # and still nothing outside the committed files
        suite_store.query_arrow(f"SELECT * FROM read_parquet('{suite_store.root / 'catalog.ducklake'}')")


def test_every_reader_is_confined_within_the_committed_files(suite_store):
    committed = _files_where(suite_store, lambda k: True)
    for sql, params, _ in NARROWED:
        suite_store.query(sql, params)
    snapshot = copies.shared(suite_store.root).current()
    assert snapshot._readers and all(r.paths is not None and r.paths <= committed for r in snapshot._readers.values())
    assert querying.run_on(snapshot, "SELECT count(*) AS n FROM runs").table["n"][0].as_py() >= 1


@pytest.mark.parametrize("case", [0, 2, 3])
def test_a_plan_read_off_the_statement_equals_duckdbs_own(suite_store, case):
    sql, params, _ = NARROWED[case]
    tree_plan = reach.one_scan_plan(sandbox.serialised(sql))
    assert tree_plan is not None  # planned without DuckDB's planner
    snapshot = copies.shared(suite_store.root).current()
    duckdb_plan = reach.plan(snapshot.catalog, sql, params)
    with snapshot.catalog_cursor() as cursor:
        folder = suite_store.root.as_posix() + "/"
        assert reach.reached_files(cursor, folder, tree_plan) == reach.reached_files(cursor, folder, duckdb_plan)


def _commit_losses(store, partitions) -> None:
    rng = np.random.default_rng(len(partitions))
    with store.begin_run("reach_test", {"later": [list(p) for p in partitions]}) as run:
        for model, step, corpus in partitions:
            run.write("token_losses", _losses(model, step, corpus, run.run_id, rng))
        run.commit()


def test_a_commit_landing_while_a_state_is_read_is_left_to_the_next_state(suite_store, monkeypatch):
    """A state is the snapshot its copy of the catalog reads, even when a commit lands while it is
    read (on PostgreSQL the metadata is read where the server's newest state shows): the next
    state then finds that commit's files for a statement it carries over."""

    sql = "SELECT count(*) AS v FROM token_losses WHERE model = 'm-race' AND corpus = 'c-0'"
    states = copies.Snapshots(suite_store.root)
    try:
        querying.run_on(states.current(), NARROWED[4][0])  # a reader with the lake attached, lent to the next state
        querying.run_on(states.current(), sql)  # no file yet: the next state carries it over
        _commit_losses(suite_store, [("m-race", 0, "c-0")])
        real = lake.snapshot_identity

        def committed_first(*args, **kwargs):
            monkeypatch.setattr(lake, "snapshot_identity", real)
            _commit_losses(suite_store, [("m-race", 1000, "c-0")])
            return real(*args, **kwargs)

        monkeypatch.setattr(lake, "snapshot_identity", committed_first)
        second = states.current()
        assert lake.snapshot_identity is real  # the commit landed while the second state was read
        assert querying.run_on(second, sql).table["v"].to_pylist() == [ROWS]
        assert second.reach(sql) == _files_where(suite_store, lambda k: (k["model"], k["step"]) == ("m-race", 0))
        assert querying.run_on(states.current(), sql).table["v"].to_pylist() == [2 * ROWS]
    finally:
        states.close()


def test_a_later_state_reaches_what_it_reached_before_and_the_new_files(suite_store, monkeypatch):
    monkeypatch.setattr(snapshots, "READ_OFF_POSTGRES", False)  # the lake's metadata read by DuckDB
    shared = copies.shared(suite_store.root)
    before = shared.current()
    for sql, params, _ in NARROWED[:4]:
        before.reach(sql, params)
    # One new file each statement reaches (a second file of an old partition among them), one none does.
    _commit_losses(suite_store, [("m-a", 1000, "c-1"), ("m-b", 3000, "c-0"), ("m-c", 1000, "c-2"),
                                 ("m-c", 3000, "c-10"), ("m-c", 0, "c-5")])
    after = shared.current()
    assert after is not before and after._new_files is not None
    assert after.deletes == before.deletes and after.macros == before.macros
    monkeypatch.setattr(reach, "reached_files", lambda *args, **kwargs: pytest.fail("evaluated over every file"))
    sql, params, keep = NARROWED[0]  # one plain scan: its new files read where the state was read
    assert after.reach(sql, params) == _files_where(suite_store, keep)
    # locally off the metadata file alone (its probe), the lake not attached; on PostgreSQL on the spare
    assert after._planner is None and after._readers == {} and (after._spare is None) == (after._probe is not None)
    for sql, params, keep in NARROWED[:4]:
        assert after.reach(sql, params) == _files_where(suite_store, keep), sql
        assert suite_store.query(sql, params).table.equals(suite_store.query(sql, params, unsafe=True).table)


def test_a_state_after_anything_but_new_rows_finds_everything_anew(suite_store):

    locator = catalog.locate(suite_store.root)

    def state_and_changes(since):
        with suite_store.read() as con:
            now = lake.snapshot_identity(con, locator)
            return now, lake.changes(con, locator, since, now)

    first, _ = state_and_changes((0, ""))
    _commit_losses(suite_store, [("m-c", 0, "c-0")])
    second, changes_to_second = state_and_changes(first)
    assert changes_to_second.only_inserts and changes_to_second.new_files is not None
    assert not state_and_changes((first[0], "another lake's time"))[1].only_inserts
    with suite_store.write() as con:  # a new saved analysis: rows inserted, into the saved analyses' table
        con.execute("INSERT INTO saved_queries (name, sql, sha256) VALUES ('other', 'SELECT 1', 'x')")
    third, changes = state_and_changes(second)
    assert changes == lake.Changes(False, None)
    assert "other" in copies.shared(suite_store.root).current().macros
    with suite_store.write() as con:  # rows removed
        con.execute("DELETE FROM saved_queries WHERE name = 'other'")
    assert state_and_changes(third)[1] == lake.Changes(False, None)
    assert "other" not in copies.shared(suite_store.root).current().macros
    with suite_store.read() as con:  # the changes up to a state end there: the commits after it are not counted
        assert lake.changes(con, locator, first, second) == changes_to_second
        # from a state to itself nothing changed: a copy of it carries every statement's files over
        assert lake.changes(con, locator, second, second) == lake.Changes(True, changes_to_second.new_files)


def _answered_by(snapshot, sql: str, params) -> int:
    """The lake snapshot of the reader that answers ``sql`` in ``snapshot``."""
    with snapshot.reader(sql, params) as (connection, _, _):
        readers = [r for r in [*snapshot._readers.values(), *snapshot._earlier] if r.connection is connection]
        return readers[0].state


def test_a_reader_of_an_earlier_state_answers_only_what_the_commits_since_left_unchanged(suite_store):
    shared = copies.shared(suite_store.root)
    runs = ("SELECT count(*) AS v FROM runs", None)  # a catalog table: every commit adds a row
    joined = NARROWED[4][:2]  # planned by DuckDB (as is NARROWED[1], with a parameter): not one plain scan
    statements = [sql_params[:2] for sql_params in NARROWED[:4]] + [runs, joined]
    statements[2] = (NARROWED[2][0], [])  # an empty parameter list (as a client may send): the same statement

    def answers_and_states():
        snapshot = shared.current()
        for sql, params in statements:
            assert suite_store.query(sql, params).table.equals(suite_store.query(sql, params, unsafe=True).table), sql
        return snapshot, [_answered_by(snapshot, sql, params) for sql, params in statements]

    first, states = answers_and_states()
    assert all(state == first.state[0] for state in states)
    _commit_losses(suite_store, [("m-c", 0, "c-5")])  # a file none of the statements reaches
    # Read off the new state's metadata alone (on PostgreSQL through the previous state's
    # connections): the lake itself is attached once a statement needs it.
    assert shared.current()._probe is not None and shared.current()._readers == {}
    second, states = answers_and_states()
    assert second.state[0] > first.state[0]
    assert states == [first.state[0], second.state[0], first.state[0], first.state[0]] + [second.state[0]] * 2
    with second.reader(*statements[0], everything=True):  # a reader of every file of the second state
        pass
    _commit_losses(suite_store, [("m-a", 1000, "c-1")])  # a second file of the first statement's partition
    third, states = answers_and_states()
    assert states == [third.state[0], third.state[0], second.state[0], second.state[0]] + [third.state[0]] * 2
    _commit_losses(suite_store, [("m-c", 0, "c-6")])  # again a file none reaches: the newest answers are kept
    later, states = answers_and_states()
    assert states == [third.state[0], later.state[0], second.state[0], second.state[0]] + [later.state[0]] * 2
    before = suite_store.query(*runs).table
    with suite_store.write() as con:  # not only new rows: nothing of an earlier state is kept
        con.execute("INSERT INTO saved_queries (name, sql, sha256) VALUES ('other', 'SELECT 1', 'x')")
    fourth, states = answers_and_states()
    assert fourth._earlier == [] and fourth._probe is None and all(state == fourth.state[0] for state in states)
    assert suite_store.query(*runs).table.equals(before)
    shared.close()
    assert all(reader.users == 0 for snapshot in (first, second, third) for reader in snapshot._readers.values())


def test_finding_a_statements_files_gives_the_spare_connection_back(suite_store, monkeypatch):
    monkeypatch.setattr(snapshots, "READ_OFF_POSTGRES", False)  # a state read through the lake
    monkeypatch.setattr(snapshots, "READ_OFF_METADATA", False)
    states = copies.Snapshots(suite_store.root)
    try:
        snapshot = states.current()
        spare = snapshot._spare
        assert spare is not None
        assert snapshot.reach("SELECT count(*) FROM token_losses WHERE model = 'none of them'") == frozenset()
        assert snapshot._spare is spare and snapshot._planner is None  # kept for the next reader, the only one opened

        def fails(*args):
            raise RuntimeError("the metadata could not be read")

        monkeypatch.setattr(reach, "reached_files", fails)  # the spare is closed, the error raised as it is
        with pytest.raises(RuntimeError, match="^the metadata could not be read$"):
            snapshot.reach("SELECT count(*) FROM token_losses WHERE model = 'm-a'")
        assert snapshot._spare is None
        with pytest.raises(duckdb.ConnectionException):
            spare.execute("SELECT 1")
    finally:
        states.close()


def test_a_poller_keeps_answering_across_more_commits_than_states_are_kept(suite_store, monkeypatch):
    """Each new state reads the metadata through a reader lent by the one before (on PostgreSQL),
    which stays open while the new state lives, even once the state that made it is closed."""
    monkeypatch.setattr(snapshots, "READ_OFF_POSTGRES", False)  # states read through the lake
    sql = NARROWED[0][0]
    expected = suite_store.query(sql, unsafe=True).table
    for index in range(copies.KEEP + 3):
        _commit_losses(suite_store, [("m-c", index, "c-0")])
        assert suite_store.query(sql).table.equals(expected)
        assert suite_store.query_df("SELECT count(*) AS n FROM token_losses WHERE model = 'm-c'")["n"].tolist() == [
            ROWS * (index + 1)]
    newest = copies.shared(suite_store.root).current()
    assert newest._probe is not None and (newest._shown_by is not None) == catalog.locate(suite_store.root).on_postgres
    copies.forget(suite_store.root)
    assert newest._shown_by is None and newest._earlier == []


def test_the_planner_of_a_state_reads_no_file_and_holds_the_memory_limit(suite_store):
    """Planning folds constants of user SQL, so its connection is capped like every reader: the
    readers with nothing attached (a first state's direct reads) and the attached ones too."""
    reference = duckdb.connect()
    reference.execute("SET memory_limit = '123MB'")
    limit = reference.execute("SELECT current_setting('memory_limit')").fetchone()
    states = copies.Snapshots(suite_store.root, memory_limit="123MB")
    try:
        snapshot = states.current()
        querying.run_on(snapshot, NARROWED[0][0])  # read directly, on a reader with nothing attached
        querying.run_on(snapshot, NARROWED[4][0])  # a join: on an attached reader
        planner = snapshot.catalog
        assert planner.execute("SELECT current_setting('memory_limit')").fetchone() == limit
        with pytest.raises(duckdb.PermissionException):
            planner.execute(f"SELECT * FROM read_parquet('{suite_store.committed_paths('token_losses')[0]}')").fetchall()
        readers = list(snapshot._readers.values())
        assert sorted(reader.attached for reader in readers) == [False, True]
        for reader in readers:
            assert reader.connection.execute("SELECT current_setting('memory_limit')").fetchone() == limit
    finally:
        states.close()


def test_a_state_read_through_the_lake_opens_its_first_connection_on_the_blank_one_it_was_given(suite_store, monkeypatch):
    """``Snapshot._read_state``: a first state read through the lake opens the lake itself (no
    probe of the metadata first), a later state that may only have added files probes its
    metadata first; each on the connection made ahead for it (``blank``), none made anew."""
    monkeypatch.setattr(snapshots, "READ_OFF_METADATA", False)
    monkeypatch.setattr(snapshots, "READ_OFF_POSTGRES", False)
    opened = []

    def recording(name):
        real = getattr(catalog.PrivateCatalog, name)

        def recorded(self, blank=None):
            opened.append((name, blank))
            return real(self, blank)
        return recorded

    for name in ("open", "open_metadata"):
        monkeypatch.setattr(catalog.PrivateCatalog, name, recording(name))
    locator = catalog.locate(suite_store.root)
    blank = catalog.blank_connection(locator)
    first = snapshots.Snapshot(suite_store.root, blank=blank)
    try:
        assert opened == [("open", blank)] and first._blank is None
        _commit_losses(suite_store, [("m-c", 0, "c-0")])
        opened.clear()
        blank = catalog.blank_connection(locator)
        later = snapshots.Snapshot(suite_store.root, blank=blank, previous=first)
        later.close()
        if not locator.on_postgres:  # there, a later state is read on a reader of the previous one
            assert opened[:1] == [("open_metadata", blank)]
    finally:
        first.close()
