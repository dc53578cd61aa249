"""``Snapshots(background=True)``, as ``serve`` and a polling ``Store.open(background_refresh=True)``
use it: a commit of another process is taken in a thread, with the connection made ahead for it
and readers ready for what the last state answered, while queries are answered from the last
state; a copy that failed is taken by the next query itself, and one that a commit of this
process overtook is dropped.

"Another process" here is a write this process does not count (``catalog.writes_in_process`` is
what tells the two apart), so each step can be waited for and looked at."""

from __future__ import annotations

import threading

import duckdb
import pytest

from quanta_db.store import catalog
from quanta_db.store.copies import Snapshots
from tests.helpers import snapshot_count

# an exception escaping the background thread fails the test instead of passing unseen
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

SAVED = "SELECT count(*) FROM saved_queries WHERE name = 'other'"
TOKENS = "SELECT count(*) FROM tokens"


@pytest.fixture
def own_writes(monkeypatch) -> list[int]:
    """This process's count of its own commits, set by the test."""
    counted = [0]
    monkeypatch.setattr(catalog, "writes_in_process", lambda: counted[0])
    return counted


@pytest.fixture
def takes(monkeypatch) -> list[tuple]:
    """Each copy taken: (on the calling thread, stamp, connection made ahead, previous copy)."""
    taken, original = [], Snapshots._take

    def recording(self, stamp, blank, previous):
        taken.append((threading.current_thread() is threading.main_thread(), stamp, blank, previous))
        return original(self, stamp, blank, previous)

    monkeypatch.setattr(Snapshots, "_take", recording)
    return taken


def another_process_commits(root, name: str = "other") -> None:
    with catalog.connect(root, read_only=False) as con:
        con.execute("INSERT INTO saved_queries (name, sql, sha256) VALUES (?, 'SELECT 1', 'x')", [name])


def settled(snapshots: Snapshots) -> None:
    """Wait for the copy being taken and what copies left to do (the connection made ahead, the
    retired copies closed), if any."""
    if snapshots._taking is not None:
        snapshots._taking.join()
    if snapshots._after_work is not None:
        snapshots._after_work.submit(lambda: None).result()  # one thread, in order: all before it is done


@pytest.fixture
def copies(store):
    snapshots = Snapshots(store.root, background=True)
    yield snapshots
    snapshots.close()


def on_the_background_thread(monkeypatch, before=lambda: None, after=lambda: None) -> None:
    """Run ``before`` and ``after`` around each copy taken off the calling thread."""
    original = Snapshots._take

    def wrapped(self, *args):
        background = threading.current_thread() is not threading.main_thread()
        if background:
            before()
        taken = original(self, *args)
        if background:
            after()
        return taken

    monkeypatch.setattr(Snapshots, "_take", wrapped)


def test_a_new_state_is_taken_in_the_background_made_ahead_and_warmed(store, copies, own_writes, takes):
    first = copies.current()
    assert snapshot_count(first, TOKENS) == 0 and snapshot_count(first, SAVED) == 0
    settled(copies)
    made_ahead = copies._blank
    assert made_ahead is not None
    another_process_commits(store.root)
    stamp = catalog.change_stamp(store.root)
    assert copies.current() is first  # answered from the last state meanwhile
    settled(copies)
    newest = copies.current()
    assert newest.generation == first.generation + 1
    assert takes[-1] == (False, stamp, made_ahead, first)
    assert (TOKENS, None) in newest.recent()  # a reader ready for what the last state answered
    assert copies._taking is None  # its stamp kept: the same state is not taken again
    settled(copies)
    assert copies._blank is not None  # the connection of the copy after it, made ahead
    assert snapshot_count(newest, SAVED) == 1
    another_process_commits(store.root, "other-2")
    assert copies.current() is newest  # again in the background: this process's count was kept
    settled(copies)
    assert copies.current().generation == newest.generation + 1


def test_a_copy_that_failed_in_the_background_is_taken_by_the_next_query(store, copies, own_writes, monkeypatch):
    first = copies.current()

    def fail():
        raise OSError("no space left on device")

    on_the_background_thread(monkeypatch, before=fail)
    another_process_commits(store.root)
    assert copies.current() is first
    settled(copies)
    assert copies._snapshots[copies._generation] is first  # nothing kept
    newest = copies.current()  # taken by this query, on its own thread
    assert newest.generation == first.generation + 1 and snapshot_count(newest, SAVED) == 1


def test_a_background_copy_overtaken_by_a_commit_of_this_process_is_dropped(store, copies, own_writes, monkeypatch):
    first = copies.current()

    def commit_of_this_process():
        own_writes[0] += 1

    on_the_background_thread(monkeypatch, after=commit_of_this_process)
    another_process_commits(store.root)
    assert copies.current() is first
    settled(copies)
    assert copies._snapshots[copies._generation] is first
    assert copies.current().generation == first.generation + 1  # the commit of this process: seen now


def test_warming_binds_each_statements_parameters_and_never_raises(corpus_store):
    """Warming plans each statement with its parameters; it raises nothing, even on a copy closed
    meanwhile (``serve`` stopping while a copy is taken in the background)."""
    copies = Snapshots(corpus_store.root)
    try:
        snapshot = copies.current()
        by_corpus = "SELECT count(*) FROM tokens WHERE corpus = ?"
        snapshot.warm([(by_corpus, ["toy"])])
        assert snapshot.recent() == [(by_corpus, ["toy"])]
    finally:
        copies.close()
    snapshot.warm([(TOKENS, None)])
    assert snapshot.recent() == [(by_corpus, ["toy"])]


def test_a_copy_keeps_one_spare_connection_and_closes_those_it_cannot_keep(store):
    import duckdb

    copies = Snapshots(store.root)
    snapshot = copies.current()
    held = snapshot._take_spare()
    if held is not None:
        held.close()
    kept, extra, late = duckdb.connect(), duckdb.connect(), duckdb.connect()
    snapshot._give_spare(kept)
    snapshot._give_spare(extra)  # one is kept already
    assert snapshot._spare is kept and kept.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(duckdb.ConnectionException):
        extra.execute("SELECT 1")
    copies.close()
    snapshot._give_spare(late)  # the copy was closed meanwhile
    assert snapshot._spare is None
    for closed in (kept, late):
        with pytest.raises(duckdb.ConnectionException):
            closed.execute("SELECT 1")


def test_every_copy_of_a_store_plans_statements_with_one_cache(store, own_writes):
    """A statement's plan holds for every state (``reach.Plans``): the copies a process takes of
    one store share the cache, so a plan made for one copy is not made again for the next."""
    copies = Snapshots(store.root)
    try:
        first = copies.current()
        first.reach("SELECT count(*) FROM runs")
        another_process_commits(store.root, "other")
        second = copies.current()
        assert second is not first and first._plans is second._plans is copies._plans
    finally:
        copies.close()


def test_a_confined_reader_is_made_on_the_connection_it_is_given(store):
    """The spare connection (or the one a statement's files were found on) becomes the reader:
    none is opened beside it and left open."""
    copies = Snapshots(store.root)
    try:
        snapshot = copies.current()
        given = snapshot._private.open()
        reader = snapshot._confined(None, given)
        assert reader.connection is given
        assert reader.connection.execute("SELECT count(*) FROM tokens").fetchone() == (0,)
        reader.connection.close()
    finally:
        copies.close()


def test_what_a_querys_new_copy_leaves_to_do_starts_once_the_query_is_done(store, monkeypatch):
    from quanta_db.store import copies as copies_module

    closed = threading.Event()
    close_all = copies_module._close_all
    monkeypatch.setattr(copies_module, "_close_all", lambda retired: (close_all(retired), closed.set()))
    snapshots = Snapshots(store.root)
    try:
        with snapshots.for_query() as first:
            assert not snapshots._making and snapshots._blank is None  # nothing made beside the query
        settled(snapshots)
        assert snapshots._blank is not None  # made once it was done
        for n in range(copies_module.KEEP):
            another_process_commits(store.root, f"other-{n}")
            with snapshots.for_query() as newest:
                assert snapshot_count(newest, SAVED.replace("= 'other'", f"= 'other-{n}'")) == 1
                assert not closed.is_set() and not first._closed  # retired (the last time), not yet closed
            settled(snapshots)
        assert closed.wait(60) and first._closed
        (thread,) = snapshots._after_work._threads  # one thread did it all: no query waited for one to start
        assert thread.name.startswith("quanta-db-after-copy")  # named, for a stack dump of a busy server
    finally:
        snapshots.close()


EXITING_READER = """
import sys, time
from quanta_db.store.copies import Snapshots
from quanta_db.store.store import Store

take = Snapshots._take
Snapshots._take = lambda self, *args: (time.sleep(1.0), take(self, *args))[1]  # still taking at exit
store = Store.open(sys.argv[1], background_refresh=True)
store.query_arrow("SELECT count(*) FROM runs")  # the first copy, taken by the query (its after-work thread made)
print("ready", flush=True)
sys.stdin.readline()  # another process committed
store.query_arrow("SELECT count(*) FROM runs")  # answered at once; the new copy is taken in a thread
"""


def test_a_process_that_exits_while_a_copy_is_taken_in_the_background_exits_cleanly(store):
    """Python shuts the after-work thread before it joins the thread taking a copy: what that
    copy leaves to do is then done by the thread itself, not handed to the shut one."""
    import subprocess
    import sys
    from pathlib import Path

    child = subprocess.Popen([sys.executable, "-c", EXITING_READER, str(store.root)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
    assert child.stdout.readline().strip() == "ready", child.stderr.read()
    another_process_commits(store.root)
    out, err = child.communicate("go\n", timeout=120)
    assert child.returncode == 0 and "Traceback" not in err, err


def test_what_a_copy_leaves_to_do_once_the_copies_are_closed_is_done_at_once(store):
    """A query that took a copy may finish after its store's copies were closed (a forgotten
    store, the process exiting): the copies it retired are closed by it, not handed to no one."""
    from quanta_db.store.snapshots import Snapshot

    snapshots = Snapshots(store.root)
    newest = snapshots.current()
    snapshots.close()
    retired = Snapshot(store.root)
    snapshots._settle(newest, [retired])
    assert retired._closed
    assert not snapshots._making and snapshots._blank is None  # nothing made ahead for a closed store


def _made_after(monkeypatch, wait) -> list:
    """The connections made ahead for copies from now on, each once ``wait()`` returned."""
    made, blank_connection = [], catalog.blank_connection

    def made_after_waiting(locator):
        wait()
        made.append(blank_connection(locator))
        return made[-1]

    monkeypatch.setattr(catalog, "blank_connection", made_after_waiting)
    return made


def test_closing_the_copies_waits_for_what_they_left_to_do(store, monkeypatch):
    """``close`` returns once the after-work thread is done: no connection of this store's copies
    is still being made (or left open) after it."""
    import time

    made = _made_after(monkeypatch, lambda: time.sleep(0.5))
    snapshots = Snapshots(store.root)
    snapshots.current()  # hands the next copy's connection to the after-work thread
    snapshots.close()
    assert not snapshots._making and snapshots._blank is None and len(made) == 1
    with pytest.raises(duckdb.ConnectionException):
        made[0].execute("SELECT 1")  # made after close began, and closed once the thread that made it was done


def test_one_connection_is_made_ahead_at_a_time_and_one_kept(store, monkeypatch):
    """``Snapshots._make_blank``: while one is being made, or one is kept, no other is made (it
    would replace the one kept, left open)."""
    go = threading.Event()
    made = _made_after(monkeypatch, lambda: go.wait(10))
    snapshots = Snapshots(store.root)
    try:
        locator = catalog.locate(store.root)
        snapshots._make_blank(locator)
        snapshots._make_blank(locator)  # one is being made
        go.set()
        snapshots._after_work.submit(lambda: None).result()  # what the after-work thread had to do is done
        assert len(made) == 1 and snapshots._blank is made[0] and not snapshots._making
        snapshots._make_blank(locator)  # one is kept
        snapshots._after_work.submit(lambda: None).result()
        assert len(made) == 1
    finally:
        snapshots.close()


def test_a_connection_that_could_not_be_made_ahead_is_made_again_next_time(store, monkeypatch):
    """``Snapshots._make_blank``: when making the connection ahead fails, none is kept (the next
    copy opens its own), and the next call makes one again."""
    attempts = []

    def fails_once(locator):
        attempts.append(locator)
        if len(attempts) == 1:
            raise duckdb.IOException("no room")
        return blank_connection(locator)

    blank_connection = catalog.blank_connection
    monkeypatch.setattr(catalog, "blank_connection", fails_once)
    snapshots = Snapshots(store.root)
    try:
        locator = catalog.locate(store.root)
        snapshots._make_blank(locator)
        snapshots._after_work.submit(lambda: None).result()
        assert snapshots._blank is None and not snapshots._making
        snapshots._make_blank(locator)
        snapshots._after_work.submit(lambda: None).result()
        assert len(attempts) == 2 and isinstance(snapshots._blank, duckdb.DuckDBPyConnection)
    finally:
        snapshots.close()
