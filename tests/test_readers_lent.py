"""Connections and readers lent between users: a process's idle connections, one user at a time
and a bounded number; a reader lent while its users keep it open; and the readers a snapshot's state
lends the next one, newest first, up to the bound."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from quanta_db.store import kept, snapshots


class _Connection:
    """Stands for a kept connection: what Idle does with it is take, give and close it."""

    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def test_idle_connections_are_lent_one_at_a_time_and_bounded_per_process():
    idle = kept.Idle()
    assert idle.take(("a",)) is None
    first, second = _Connection(), _Connection()
    idle.give(("a",), first)
    idle.give(("a",), second)  # one is kept for a key already: the other is closed
    assert second.closed and not first.closed
    assert idle.take(("a",)) is first and idle.take(("a",)) is None  # lent to one user at a time
    others = [_Connection() for _ in range(kept.MAX_IDLE + 1)]
    for index, connection in enumerate(others):
        idle.give((index,), connection)
    assert [c.closed for c in others] == [True] + [False] * kept.MAX_IDLE  # the least recent key's closed
    child = os.fork()
    if child == 0:  # a forked child shares its parent's sockets: it neither uses nor closes them
        own = _Connection()  # but keeps its own from then on
        inherited = idle.take((1,)) is None and not any(c.closed for c in others[1:])
        idle.give(("child",), own)
        os._exit(0 if inherited and idle.take(("child",)) is own else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
    assert idle.take((1,)) is others[1]


def test_a_retired_reader_is_lent_only_while_its_users_keep_it_open():
    """``_Reader.borrow``: a reader in use is lent to one more user, retired or not; a retired one
    no query uses any more is closed (by its last user), so it is never lent again."""
    reader = snapshots._Reader(None, None, 1, threading.Lock())
    assert reader.borrow() and reader.users == 1
    reader.retired = True
    assert reader.borrow() and reader.users == 2
    reader.users = 1
    assert reader.borrow() and reader.users == 2
    reader.users = 0
    assert not reader.borrow() and reader.users == 0


def test_a_snapshot_lends_its_newest_readers_then_those_it_was_lent_up_to_the_bound():
    """``Snapshot._lend``: the next state gets this one's readers newest first, then the earlier
    states' readers this one was lent, at most ``MAX_READERS`` in all, each marked in use once;
    a retired reader nobody uses (closed) is never lent."""
    guard = threading.Lock()
    own = [snapshots._Reader(f"own {i}", None, 2, guard) for i in range(3)]
    earlier = [snapshots._Reader(f"earlier {i}", None, 1, guard) for i in range(snapshots.MAX_READERS)]
    own[1].retired = True  # closed: its last user is gone
    snapshot = snapshots.Snapshot.__new__(snapshots.Snapshot)
    snapshot._readers = OrderedDict((id(reader), reader) for reader in own)
    snapshot._earlier = earlier
    lent = snapshot._lend()
    expected = [own[2], own[0], *earlier[:snapshots.MAX_READERS - 2]]
    assert [reader.connection for reader in lent] == [reader.connection for reader in expected]
    assert all(reader.users == 1 for reader in expected) and own[1].users == 0 and earlier[-2].users == 0
    snapshot._readers = OrderedDict((i, snapshots._Reader(f"new {i}", None, 3, guard))
                                    for i in range(snapshots.MAX_READERS + 2))
    assert [reader.connection for reader in snapshot._lend()] == [
        f"new {i}" for i in reversed(range(2, snapshots.MAX_READERS + 2))]


def test_a_kept_reader_lent_to_two_users_is_closed_only_once_both_are_done():
    """``Snapshot._held`` marks each user of a kept reader (``_keep`` closes the least recent idle
    ones past ``MAX_READERS``): one in use, by one user or two, is never closed under them."""
    guard = threading.Lock()
    snapshot = snapshots.Snapshot.__new__(snapshots.Snapshot)
    snapshot._lock, snapshot._readers = guard, OrderedDict()
    shared = snapshot._keep(snapshots._Reader(_Connection(), frozenset({"a"}), 1, guard))
    assert snapshot._held(frozenset({"a"})) is shared and shared.users == 2  # its maker and one more
    snapshot._release(shared)
    others = [snapshot._keep(snapshots._Reader(_Connection(), frozenset({str(i)}), 1, guard))
              for i in range(snapshots.MAX_READERS)]
    assert not shared.connection.closed  # still in use by one
    for other in others:
        snapshot._release(other)
    snapshot._release(shared)
    assert shared.users == 0
    snapshot._keep(snapshots._Reader(_Connection(), frozenset({"new"}), 1, guard))
    assert shared.connection.closed  # idle now, the least recent: closed
    assert snapshot._held(frozenset({"a"})) is None
