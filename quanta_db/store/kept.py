"""Connections a process keeps to a store's PostgreSQL catalog between uses.

A new psycopg session costs 10–15 ms and attaching the lake for writing 80–100 ms, paid by every
query's change stamp and every commit when each opened its own: an ingest commits once per file
it makes. So a process keeps, per catalog, one session for reads of the metadata (change stamps,
:mod:`quanta_db.store.postgres_metadata`), and idle ones for the write lock and for writing,
each taken by one user at a time. A kept connection the server ended is replaced on its next
use; a forked child never uses (nor closes) its parent's: they share the sockets.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict

from quanta_db.errors import StoreError
from quanta_db.store import lake

CONNECT_TIMEOUT_S = 10  # a server that does not answer is an error after this long, not a hang


def connect(locator: lake.Locator):
    """A new psycopg session (autocommit) on the store's PostgreSQL catalog database."""
    try:
        import psycopg
    except ImportError:
        raise StoreError("this store's catalog is on PostgreSQL: pip install 'quanta-db[postgres]'") from None
    try:
        return psycopg.connect(locator.connection_url(), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as error:
        raise StoreError(lake.describe_error(locator, error)) from None


MAX_IDLE = 2  # stores whose idle connections one process keeps (the least recent closed)


class Idle:
    """Idle connections by key, each taken by one user at a time (:meth:`take`) and given back
    when it is fit for the next (:meth:`give`); those of the :data:`MAX_IDLE` keys given back
    last are kept (a server allows a bounded number of sessions)."""

    def __init__(self):
        self._idle: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()
        self._pid = os.getpid()  # pragma: no mutate  (None would do: the first use sets it, nothing kept yet)

    def take(self, key: tuple):
        """The idle connection kept for ``key``, now the caller's; None when there is none."""
        with self._lock:
            self._forked()
            return self._idle.pop(key, None)

    def give(self, key: tuple, connection) -> None:
        """Keep ``connection`` for the next user of ``key`` (closed when one is kept already)."""
        closing = [connection]
        with self._lock:
            self._forked()
            if key not in self._idle:
                self._idle[key], closing = connection, []
                while len(self._idle) > MAX_IDLE:
                    closing.append(self._idle.popitem(last=False)[1])
        for each in closing:
            each.close()

    def _forked(self) -> None:
        if self._pid != os.getpid():
            self._idle = OrderedDict()
            self._pid = os.getpid()


def key(locator: lake.Locator) -> tuple:
    return locator.connection_url(), locator.schema


_reading: dict[str, object] = {}  # connection URL -> this process's session for reads of the metadata
_reading_lock = threading.Lock()
_reading_pid = os.getpid()


def read(locator: lake.Locator, reading):
    """``reading(session)`` on this process's kept session on ``locator``'s server, once more on
    a new one if the server closed it; a failure is a :class:`StoreError`."""
    import psycopg

    with _reading_lock:
        for attempt in range(2):
            session = reading_session(locator)
            try:
                return reading(session)
            except psycopg.OperationalError as error:  # the server closed it: once more on a new one
                _reading.pop(locator.connection_url(), None)
                with contextlib.suppress(psycopg.Error):
                    session.close()
                if attempt:
                    raise StoreError(lake.describe_error(locator, error)) from None
            except psycopg.Error as error:  # e.g. the store's schema was dropped
                raise StoreError(lake.describe_error(locator, error)) from None
    raise AssertionError("unreachable")  # pragma: no cover


def reading_session(locator: lake.Locator):
    """This process's session for reads of the metadata on ``locator``'s server (under
    ``_reading_lock``)."""
    global _reading_pid
    if _reading_pid != os.getpid():
        _reading.clear()
        _reading_pid = os.getpid()
    url = locator.connection_url()
    session = _reading.get(url)
    if session is None or session.closed:
        session = _reading[url] = connect(locator)
    return session
