"""The catalog states that queries read (``snapshots``, ``copies``): one confined copy per process
reused until a commit lands, background copies, polling, the store's own reads, the readers a
state keeps and the limits every attempt of a statement runs under."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import duckdb
import pytest

from tests.helpers import commit_vocab, snapshot_count


def test_queries_of_one_process_reuse_a_confined_copy_until_a_commit_lands(store, monkeypatch):
    import numpy as np

    from quanta_db.errors import QueryError
    from quanta_db.store import catalog, copies
    from quanta_db.store.store import Store

    opened = []

    class Counted(catalog.PrivateCatalog):
        def __init__(self, *args, **kwargs):
            opened.append(1)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(catalog, "PrivateCatalog", Counted)
    copies.forget(store.root)
    runs = "SELECT count(*) AS n FROM runs WHERE status = 'committed'"
    assert store.query_arrow(runs)["n"][0].as_py() == store.query_arrow(runs)["n"][0].as_py() == 0
    assert len(opened) == 1
    with store.begin_run("test_copy", {"n": 1}) as run:
        run.write_artifact("x", np.zeros(1))
        run.commit()
    assert store.query_arrow(runs)["n"][0].as_py() == 1  # the commit is seen at once
    assert len(opened) == 2
    with pytest.raises(QueryError, match="Permission|not allowed"):  # the new copy is confined too
        store.query_arrow("SELECT * FROM read_text('/etc/hostname')")
    for index in range(copies.MAX_SHARED_STORES + 1):  # copies of the least recent stores are closed
        other = Store.init(store.root.parent / f"other-{index}")
        other.query_arrow("SELECT 1")
    assert (store.root, False) not in copies._shared and len(copies._shared) == copies.MAX_SHARED_STORES


OTHER_PROCESS_WRITES = ("import sys; from quanta_db.store.catalog import connect\n"
                        "with connect(sys.argv[1], read_only=False) as con:\n"
                        "    con.execute(\"INSERT INTO saved_queries (name, sql, sha256) VALUES ('other', 'SELECT 1', 'x')\")")


def test_background_copies_answer_from_the_last_state_until_the_next_is_taken(store):
    import subprocess
    import sys

    import numpy as np

    from quanta_db.store.copies import Snapshots

    saved = "SELECT count(*) FROM saved_queries WHERE name = 'other'"
    runs = "SELECT count(*) FROM runs WHERE status = 'committed'"
    snapshots = Snapshots(store.root, background=True)
    try:
        first = snapshots.current()
        subprocess.run([sys.executable, "-c", OTHER_PROCESS_WRITES, str(store.root)], check=True)
        answered = snapshots.current()  # another process's commit: not waited for
        assert answered.generation == first.generation
        assert snapshot_count(answered, saved) == 0
        deadline = time.monotonic() + 60
        while snapshots.current().generation == first.generation and time.monotonic() < deadline:
            time.sleep(0.05)
        assert snapshot_count(snapshots.current(), saved) == 1
        with store.begin_run("test_copy", {"n": 1}) as run:  # a commit of this process: seen at once
            run.write_artifact("x", np.zeros(1))
            run.commit()
        assert snapshot_count(snapshots.current(), runs) == 1
    finally:
        snapshots.close()


def test_a_store_opened_for_polling_shows_another_processs_commit_without_waiting_for_it(store):
    import subprocess
    import sys

    import numpy as np

    from quanta_db.store.store import Store

    polling = Store.open(store.root, background_refresh=True)
    strict = Store.open(store.root)
    saved = "SELECT count(*) AS n FROM saved_queries WHERE name = 'other'"
    runs = "SELECT count(*) AS n FROM runs WHERE status = 'committed'"

    def answer(reader, sql):
        return reader.query_arrow(sql)["n"][0].as_py()

    assert answer(polling, saved) == 0
    subprocess.run([sys.executable, "-c", OTHER_PROCESS_WRITES, str(store.root)], check=True)
    assert answer(polling, saved) == 0  # answered from the state before while the next copy is taken
    assert answer(strict, saved) == 1  # a strict reader (the default) waits for its copy: it sees the commit at once
    deadline = time.monotonic() + 60
    while answer(polling, saved) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert answer(polling, saved) == 1
    with polling.begin_run("test_copy", {"n": 1}) as run:  # a commit of this process: seen at once
        run.write_artifact("x", np.zeros(1))
        run.commit()
    assert answer(polling, runs) == 1


def test_a_private_catalog_on_postgresql_has_no_metadata_file_to_open(store):
    """The store's reads off a metadata file are for local catalogs: asked on PostgreSQL, it says why."""
    from quanta_db.store import catalog

    if not catalog.locate(store.root).on_postgres:
        pytest.skip("a local catalog's metadata file is opened (tests/test_reach_metadata.py)")
    private = catalog.PrivateCatalog(store.root)
    try:
        with pytest.raises(ValueError, match="^a catalog on PostgreSQL has no metadata file$"):
            private.open_metadata()
    finally:
        private.close()


def test_a_private_catalog_shows_one_state_to_every_connection_it_opens(store):
    import numpy as np

    from quanta_db.store import catalog

    runs = "SELECT count(*) FROM runs WHERE status = 'committed'"
    private = catalog.PrivateCatalog(store.root)
    try:
        first = private.open()
        with store.begin_run("test_copy", {"n": 1}) as run:  # replaces the readers' copy meanwhile
            run.write_artifact("x", np.zeros(1))
            run.commit()
        second = private.open()
        assert first.execute(runs).fetchone()[0] == second.execute(runs).fetchone()[0] == 0
        first.close()
        second.close()
    finally:
        private.close()
    later = catalog.PrivateCatalog(store.root)
    try:
        with contextlib.closing(later.open()) as con:
            assert con.execute(runs).fetchone()[0] == 1
    finally:
        later.close()


def test_a_private_catalogs_connections_are_attached_read_only(store):
    """Every connection a private catalog opens refuses writes: the readers' second wall, under
    the user-SQL sandbox, and a pinned state is never written to."""
    from quanta_db.store import catalog, lake

    private = catalog.PrivateCatalog(store.root)
    try:
        with contextlib.closing(private.open()) as con:
            with pytest.raises(duckdb.Error, match="read-only"):
                con.execute(f"CREATE TABLE {lake.LAKE}.written AS SELECT 1 AS x")
    finally:
        private.close()
    assert not store.relation_exists("written")


def test_the_stores_own_reads_attach_the_held_state_and_a_state_with_a_log_is_copied(store, catalog_backend, tmp_path):
    import numpy as np

    from quanta_db.store import catalog, lake

    if catalog_backend != "duckdb":
        pytest.skip("a catalog on PostgreSQL has no metadata file")
    attached = "SELECT path FROM duckdb_databases() WHERE database_name = ?"
    private = catalog.PrivateCatalog(store.root)
    try:
        with contextlib.closing(private.open_metadata()) as con:
            held = con.execute(attached, [lake.METADATA_CATALOG]).fetchone()[0]
            assert "quanta-db-sql-" not in held and Path(held).exists()  # the held file (DuckDB shows where the link points)
            before = lake.snapshot_identity(con, private.locator)
        with store.begin_run("test_held", {"n": 1}) as run:  # replaces the readers' copy meanwhile
            run.write_artifact("x", np.zeros(1))
            run.commit()
        with contextlib.closing(private.open_metadata()) as con:
            assert lake.snapshot_identity(con, private.locator) == before
        (tmp_path / "empty.wal").write_bytes(b"")
        private._keep_copy(tmp_path / "empty.wal", lake.LOCAL_FILE + ".wal")  # as a dead writer's log is kept
        with contextlib.closing(private.open_metadata()) as con:
            path = con.execute(attached, [lake.METADATA_CATALOG]).fetchone()[0]
            assert "quanta-db-sql-" in path and not Path(path).exists()  # a copy, removed once attached
            assert lake.snapshot_identity(con, private.locator) == before
    finally:
        private.close()


def test_the_next_copys_first_connection_is_made_ahead_and_closed_with_the_copies(store):
    import numpy as np

    from quanta_db.store.copies import Snapshots

    copies = Snapshots(store.root)
    try:
        copies.current()
        deadline = time.monotonic() + 60
        while copies._blank is None and time.monotonic() < deadline:
            time.sleep(0.01)
        ahead = copies._blank
        assert ahead is not None
        with store.begin_run("test_copy", {"n": 1}) as run:
            run.write_artifact("x", np.zeros(1))
            run.commit()
        assert snapshot_count(copies.current(), "SELECT count(*) FROM runs WHERE status = 'committed'") == 1
        assert copies._blank is not ahead  # taken by the new copy
    finally:
        copies.close()
    assert copies._blank is None and not copies._making
    with pytest.raises(duckdb.ConnectionException):
        ahead.execute("SELECT 1")  # the new copy's first connection was closed with it


def _fd_target(fd: str) -> str:
    """What this process's descriptor ``fd`` names ("" once closed: threads of the store's copies
    close connections while the folder is listed)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def test_user_sql_reads_no_catalog_file_through_the_descriptors_the_process_holds(store, catalog_backend):
    from quanta_db.errors import QueryError

    if catalog_backend != "duckdb":
        pytest.skip("a catalog on PostgreSQL has no file here")
    store.query_arrow("SELECT count(*) FROM runs")  # this process now holds its state of the catalog open
    held = [fd for fd in os.listdir("/proc/self/fd") if "catalog" in _fd_target(fd)]
    assert held
    for fd in held:
        with pytest.raises(QueryError, match="Permission|not allowed"):
            store.query_arrow(f"SELECT size FROM read_blob('/proc/self/fd/{fd}')")


def test_a_process_counts_each_writing_connection_once_and_keeps_one_set_of_copies_per_store(store, monkeypatch):
    """``catalog.writes_in_process`` counts this process's closed writing connections (one each:
    read-only ones are not writes), and ``copies.shared`` keeps one set of copies per store and
    refresh mode in a process, made anew in a forked child (whose parent's connections it must
    not use), closing the least recently used beyond ``MAX_SHARED_STORES``."""
    from quanta_db.store import catalog, copies

    before = catalog.writes_in_process()
    with catalog.connect(store.root, read_only=False):
        pass
    with catalog.connect(store.root, read_only=True):
        pass
    assert catalog.writes_in_process() == before + 1
    first = copies.shared(store.root)
    assert copies.shared(store.root) is first and copies.shared(Path(str(store.root))) is first
    assert copies.shared(store.root, background=True) is not first
    monkeypatch.setattr(copies, "_shared_pid", -1)  # as a forked child finds it
    child = copies.shared(store.root)
    assert child is not first and copies.shared(store.root) is child
    others = [copies.shared(store.root / f"other-{n}") for n in range(copies.MAX_SHARED_STORES - 1)]
    assert copies.shared(store.root) is child  # now the most recently used
    copies.shared(store.root / "one-more")
    assert others[0]._closed and not any(o._closed for o in others[1:]) and not child._closed
    copies.forget()


def test_a_copy_plans_on_one_connection_and_refuses_to_once_closed(store, monkeypatch):
    """``Snapshot._planning``: the planning connection a second thread made while the first was
    kept is closed (one planner per copy), and a closed copy plans nothing."""
    from quanta_db.errors import QuantaError
    from quanta_db.store import snapshots

    snapshot = snapshots.Snapshot(store.root)
    made, real = [], snapshots.Snapshot._planner_connection

    def racing(self):
        connection = real(self)
        made.append(connection)
        if len(made) == 1:
            self._planning()  # another thread, done first
        return connection

    monkeypatch.setattr(snapshots.Snapshot, "_planner_connection", racing)
    planner = snapshot._planning()
    assert len(made) == 2 and planner.connection is made[1] and snapshot._planning() is planner
    with pytest.raises(duckdb.ConnectionException):
        made[0].execute("SELECT 1")
    assert planner.connection.execute("SELECT 1").fetchall() == [(1,)]
    snapshot.close()
    closing = snapshots.Snapshot(store.root)

    def closed_meanwhile(self):
        connection = real(self)
        made.append(connection)
        self.close()
        return connection

    monkeypatch.setattr(snapshots.Snapshot, "_planner_connection", closed_meanwhile)
    with pytest.raises(QuantaError, match="^this copy of the catalog was closed$"):
        closing._planning()
    assert closing._planner is None
    with pytest.raises(duckdb.ConnectionException):
        made[2].execute("SELECT 1")


@pytest.fixture
def files_found_on_a_connection(monkeypatch):
    """A statement's files are found on a connection with the lake attached, which becomes its
    reader, rather than read off the catalog's metadata (on PostgreSQL too)."""
    from quanta_db.store import snapshots

    monkeypatch.setattr(snapshots, "READ_OFF_METADATA", False)
    monkeypatch.setattr(snapshots, "READ_OFF_POSTGRES", False)


@pytest.mark.usefixtures("files_found_on_a_connection")
def test_a_connection_that_found_a_statements_files_is_kept_for_the_next_when_a_reader_was_ready(store):
    """``Snapshot._reach`` finds a statement's files on the copy's unconfined connection, which
    becomes the statement's reader; and (``_reader_for``) when a kept reader already answers a
    statement, the connection its files were found on is given back to the copy (its next
    catalog read or reader uses it) rather than dropped."""
    from quanta_db.store import snapshots

    commit_vocab(store, ["t"], ["a"])
    snapshot = snapshots.Snapshot(store.root)
    try:
        found_on = snapshot._spare  # the connection the copy opened, with the lake attached
        with snapshot.reader("SELECT count(*) FROM vocab WHERE tokenizer = 't'") as (first, narrowed, _):
            assert first is found_on is not None
            assert narrowed and first.execute("SELECT count(*) FROM vocab WHERE tokenizer = 't'").fetchone() == (1,)
        # its files were found on the connection the copy opened, which then became its reader:
        # no second connection attached the lake (no planning one either: the plan is the tree's)
        assert snapshot._planner is None and snapshot._spare is None and len(snapshot._readers) == 1
        spare = snapshot._private.open()
        snapshot._give_spare(spare)
        with snapshot.reader("SELECT token FROM vocab WHERE tokenizer = 't'") as (second, _, _):
            assert second is first
        assert snapshot._spare is spare
    finally:
        snapshot.close()


def test_a_direct_read_that_does_not_run_is_retried_through_the_lake_with_its_parameters(store, monkeypatch):
    """``querying.run_on``: a statement given a reader with nothing attached (it reads its files
    directly) whose direct read does not run goes through the lake on an attached reader
    confined to the files found with its parameters."""
    from quanta_db.store import copies, querying, snapshots

    commit_vocab(store, ["t", "u"], ["a", "b"])
    monkeypatch.setattr(snapshots.Snapshot, "direct", lambda self, sql, params=None: "SELECT no_such_function()")
    asked = []
    reader = snapshots.Snapshot.reader

    def recorded(self, sql, params=None, everything=False, attached=False):
        asked.append((params, attached))
        return reader(self, sql, params, everything, attached)

    monkeypatch.setattr(snapshots.Snapshot, "reader", recorded)
    snapshot = copies.shared(store.root).current()
    sql = "SELECT token FROM vocab WHERE tokenizer = ?"
    assert querying.run_on(snapshot, sql, ["u"]).table["token"].to_pylist() == ["b"]
    assert asked == [(["u"], False), (["u"], True)]  # not every file: its own, found with its parameters


def test_every_attempt_of_a_statement_runs_under_its_time_and_row_limits(store, monkeypatch):
    """``querying.run_on``: the retry through the lake after a direct read that does not run keeps
    the caller's time limit and row limit (a retry without them could run for ever)."""
    from quanta_db.store import copies, querying, snapshots

    commit_vocab(store, ["t", "u"], ["a", "b"])
    monkeypatch.setattr(snapshots.Snapshot, "direct", lambda self, sql, params=None: "SELECT no_such_function()")
    limits = []
    execute = querying._execute

    def recorded(connection, sql, params, time_limit_ms, max_rows, *rest, **flags):
        limits.append((sql, time_limit_ms, max_rows))
        return execute(connection, sql, params, time_limit_ms, max_rows, *rest, **flags)

    monkeypatch.setattr(querying, "_execute", recorded)
    sql = "SELECT token FROM vocab WHERE tokenizer = ?"
    result = querying.run_on(copies.shared(store.root).current(), sql, ["t"], time_limit_ms=60_000, max_rows=1)
    assert result.table["token"].to_pylist() == ["a"]
    assert limits == [("SELECT no_such_function()", 60_000, 1), (sql, 60_000, 1)]


def test_an_owner_statement_that_returns_no_rows_is_an_empty_result(store):
    """``--unsafe`` lets the owner run statements that return nothing (a SET): an empty result."""
    result = store.query("SET VARIABLE answer = 42", unsafe=True)
    assert (result.table.num_columns, result.table.num_rows, result.truncated, result.elapsed_ms) == (0, 0, False, 0.0)


def test_a_copy_on_postgres_is_pinned_to_the_snapshot_its_stamp_read(store, monkeypatch):
    """The newest snapshot is asked once a new copy (the change stamp's, which the copy is then
    pinned to), not a second time by the copy: one server round trip less for every new state."""
    from quanta_db.store import catalog, copies

    if not catalog.locate(store.root).on_postgres:
        pytest.skip("a local copy holds its state in its file: no snapshot is asked")
    asked, latest = [], catalog._latest_snapshot
    monkeypatch.setattr(catalog, "_latest_snapshot", lambda locator: asked.append(locator) or latest(locator))
    snapshots = copies.Snapshots(store.root)
    try:
        with snapshots.for_query() as snapshot:
            assert snapshot.state[0] == latest(catalog.locate(store.root))
        assert len(asked) == 1
    finally:
        snapshots.close()


@pytest.mark.usefixtures("files_found_on_a_connection")
def test_a_snapshot_keeps_its_most_recent_idle_readers_up_to_the_limit(store):
    """Each statement reaching other files gets a reader of its own, its files found on a reader
    already open (``_catalog_reader``: no planning connection is opened while one is); a snapshot
    keeps the ``MAX_READERS`` most recent for later statements and closes the least recent idle one beyond."""
    from quanta_db.store import snapshots

    names = [f"t{i}" for i in range(snapshots.MAX_READERS + 3)]
    commit_vocab(store, names, names)
    snapshot = snapshots.Snapshot(store.root)
    try:
        used = []
        for name in names:
            with snapshot.reader(f"SELECT count(*) FROM vocab WHERE tokenizer = '{name}'") as (reader, narrowed, _):
                assert narrowed and reader.execute(f"SELECT token FROM vocab WHERE tokenizer = '{name}'").fetchall() == [(name,)]
                used.append(reader)
        assert len(set(map(id, used))) == len(names)  # one reader a statement
        assert snapshot._planner is None  # the later statements' files were found on a kept reader
        kept = [reader.connection for reader in snapshot._readers.values()]
        assert kept == used[-snapshots.MAX_READERS:]
        with pytest.raises(duckdb.ConnectionException):  # the least recent were closed
            used[0].execute("SELECT 1")
        spare = snapshot._private.open()
        snapshot._give_spare(spare)
        with snapshot.reader(f"SELECT count(*) FROM vocab WHERE tokenizer = '{names[0]}'") as (again, _, _):
            assert again is spare  # its files known, its reader gone: a new one on the copy's spare connection
        # a reader in use is never closed to make room, however many readers come after it
        with snapshot.reader(f"SELECT token FROM vocab WHERE tokenizer = '{names[0]}'") as (busy, _, _):
            for name in names[1:]:
                with snapshot.reader(f"SELECT token FROM vocab WHERE tokenizer = '{name}' AND token IS NOT NULL"):
                    pass
            assert busy.execute(f"SELECT token FROM vocab WHERE tokenizer = '{names[0]}'").fetchall() == [(names[0],)]
    finally:
        snapshot.close()


@pytest.mark.usefixtures("files_found_on_a_connection")
def test_a_reader_in_use_when_its_snapshot_closes_answers_on_and_is_closed_by_its_last_user(store):
    from quanta_db.store import snapshots

    commit_vocab(store, ["t"], ["a"])
    snapshot = snapshots.Snapshot(store.root)
    sql = "SELECT token FROM vocab WHERE tokenizer = 't'"
    with snapshot.reader(sql) as (reader, _, _):
        snapshot.close()
        assert reader.execute(sql).fetchall() == [("a",)]
    with pytest.raises(duckdb.ConnectionException):
        reader.execute("SELECT 1")


def test_a_state_whose_catalog_cannot_be_opened_closes_the_connection_made_for_it(store, monkeypatch):
    """A state that fails at its first step (the catalog unreachable) raises that error and closes
    the connection made ahead for it (``blank``) rather than leaking it; with none, the same error."""
    from quanta_db.errors import StoreError
    from quanta_db.store import catalog, snapshots

    def unreachable(*args, **kwargs):
        raise StoreError("cannot open the catalog: unreachable")

    blank = catalog.blank_connection(catalog.locate(store.root))
    monkeypatch.setattr(catalog, "PrivateCatalog", unreachable)
    for given in (blank, None):
        with pytest.raises(StoreError, match="unreachable"):
            snapshots.Snapshot(store.root, blank=given)
    with pytest.raises(duckdb.ConnectionException):
        blank.execute("SELECT 1")


def test_a_confined_reader_is_made_on_the_connection_given_or_else_on_the_blank_made_ahead(store, monkeypatch):
    """``Snapshot._confined``: a reader takes the connection it is given (the state's spare) and
    opens none; given none, it opens the state on the connection made ahead for it (``blank``).
    Either is confined to the delete files the state listed once, not listed again per reader."""
    from quanta_db.store import catalog, lake, snapshots

    real, real_deletes = catalog.PrivateCatalog.open, lake.delete_files
    opened, listed = [], []
    monkeypatch.setattr(catalog.PrivateCatalog, "open",
                        lambda self, blank=None: opened.append(blank) or real(self, blank))
    monkeypatch.setattr(lake, "delete_files", lambda con: listed.append(con) or real_deletes(con))
    snapshot = snapshots.Snapshot(store.root)
    readers = []
    try:
        given = real(snapshot._private)
        opened.clear()
        listed.clear()
        readers.append(snapshot._confined(None, given))
        assert readers[0].connection is given and opened == []
        snapshot._blank = blank = catalog.blank_connection(catalog.locate(store.root))
        readers.append(snapshot._confined(None, None))
        assert opened == [blank] and snapshot._blank is None and readers[1].connection is blank and listed == []
        assert [reader.connection.execute("SELECT count(*) FROM runs").fetchone() for reader in readers] == [(0,), (0,)]
    finally:
        for reader in readers:
            reader.connection.close()
        snapshot.close()


def test_a_statement_whose_files_a_state_does_not_know_has_no_earlier_reader(store):
    """``Snapshot._earlier_reader`` lends a reader of an earlier state only for a statement whose
    files this state found (and when): none for one it never reached or once it is closed (its
    statements are then forgotten), rather than failing."""
    from quanta_db.store import snapshots

    commit_vocab(store, ["t"], ["a"])
    sql = "SELECT token FROM vocab WHERE tokenizer = 't'"
    snapshot = snapshots.Snapshot(store.root)
    try:
        paths = snapshot.reach(sql)
        assert paths and snapshot._earlier_reader("SELECT token FROM vocab", None, paths) is None
    finally:
        snapshot.close()
    assert snapshot._earlier_reader(sql, None, paths) is None


@pytest.mark.parametrize("read_off_metadata", [True, False])
def test_a_state_remembers_the_files_of_its_latest_statements_up_to_the_limit(store, monkeypatch, read_off_metadata):
    """``Snapshot._remember``: the files of at most ``reach.MAX_REACHES`` statements, the oldest
    forgotten first, a remembered statement's not looked for again (``_reach``); ``recent`` gives
    the latest with their parameters, newest first (found off the metadata or through the lake)."""
    from quanta_db.store import reach, snapshots

    monkeypatch.setattr(reach, "MAX_REACHES", 3)
    monkeypatch.setattr(snapshots, "READ_OFF_METADATA", read_off_metadata)
    monkeypatch.setattr(snapshots, "READ_OFF_POSTGRES", read_off_metadata)
    commit_vocab(store, ["t"], ["a"])
    statements = [(f"SELECT token FROM vocab WHERE tokenizer = '{name}'", None) for name in "tu"]
    statements += [("SELECT token FROM vocab WHERE tokenizer = ?", [name]) for name in "vw"]
    snapshot = snapshots.Snapshot(store.root)
    try:
        for sql, params in statements:
            snapshot.reach(sql, params)
        remembered = []
        monkeypatch.setattr(snapshot, "_remember", lambda *args: remembered.append(args))
        snapshot.reach(*statements[-1])  # known: its files are not looked for again
        assert remembered == []
        assert snapshot.recent(10) == statements[:0:-1]
        assert list(snapshot._reached) == [(sql, repr(params)) for sql, params in statements[1:]]
    finally:
        snapshot.close()


def test_a_state_on_postgresql_pins_the_snapshot_its_change_stamp_read(store, catalog_backend, monkeypatch):
    """Taking a state asks PostgreSQL for the newest snapshot once (the change stamp) and pins
    that one: no second session's question, and no later snapshot than the stamp it is kept under."""
    if catalog_backend != "postgresql":
        pytest.skip("a local state is a copy of the catalog's file: nothing is pinned")
    from quanta_db.store import catalog
    from quanta_db.store.copies import Snapshots

    asked = []
    real = catalog._latest_snapshot
    monkeypatch.setattr(catalog, "_latest_snapshot", lambda locator: asked.append(locator) or real(locator))
    snapshots = Snapshots(store.root)
    try:
        state = snapshots.current()
        assert len(asked) == 1 and state._private.pinned == real(catalog.locate(store.root))
    finally:
        snapshots.close()
