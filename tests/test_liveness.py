"""A running job's liveness, as gc and the other jobs judge it: the staging marker, the one
heartbeat thread of a process that refreshes it, and whether a marker's owner runs, by process on its
own host and by heartbeat anywhere."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest

from quanta_db.store import liveness


@pytest.fixture
def fast_heartbeat(monkeypatch):
    monkeypatch.setenv(liveness.HEARTBEAT_ENV, "0.05")
    monkeypatch.setattr(liveness, "_thread", None)  # a fresh beating thread that reads the fast interval
    monkeypatch.setattr(liveness, "_registered", set())


def test_the_heartbeat_refreshes_a_registered_marker_and_lets_a_removed_one_go(tmp_path, fast_heartbeat):
    live, gone = tmp_path / "live", tmp_path / "gone"
    liveness.write_marker(live, run_id="a")
    liveness.write_marker(gone, run_id="b")
    assert liveness.read_marker(live) == {"run_id": "a", "pid": os.getpid(), "host": socket.gethostname()}
    old = time.time() - 3600
    os.utime(live / liveness.MARKER, (old, old))
    (gone / liveness.MARKER).unlink()
    gone.rmdir()
    deadline = time.monotonic() + 5
    while (liveness.heartbeat_age_s(live) > 60 or gone in liveness._registered) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert liveness.heartbeat_age_s(live) < 60
    assert gone not in liveness._registered and live in liveness._registered
    assert liveness.heartbeat_age_s(gone) == float("inf")
    liveness.let_go(live)
    assert live not in liveness._registered


def test_one_heartbeat_thread_beats_for_every_folder_and_a_dead_one_is_replaced(tmp_path, fast_heartbeat):
    """A process running many jobs keeps one beating thread, not one per staging folder; a thread
    that stopped (an exception in a beat) is started again by the next folder registered."""
    liveness.write_marker(tmp_path / "first", run_id="a")
    beating = liveness._thread
    liveness.write_marker(tmp_path / "second", run_id="b")
    assert liveness._thread is beating and beating.is_alive()
    stopped = threading.Thread(target=lambda: None)
    stopped.start()
    stopped.join()
    liveness._thread = stopped
    liveness.keep_alive(tmp_path / "third")
    assert liveness._thread is not stopped and liveness._thread.is_alive()
    for name in ("first", "second", "third"):
        liveness.let_go(tmp_path / name)


def test_owner_alive_by_process_and_by_heartbeat(tmp_path, fast_heartbeat, monkeypatch):
    mine = tmp_path / "mine"
    liveness.write_marker(mine)
    assert liveness.owner_alive(mine)
    liveness.let_go(mine)
    assert not liveness.owner_alive(mine)  # this process, no longer keeping it
    assert not liveness.owner_alive(tmp_path / "no_marker")
    dead = tmp_path / "dead"
    dead.mkdir()
    child = os.fork() if hasattr(os, "fork") else None
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)  # a pid of this host that no longer runs
    (dead / liveness.MARKER).write_text(f'{{"pid": {child}, "host": "{socket.gethostname()}"}}')
    assert not liveness.owner_alive(dead)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / liveness.MARKER).write_text('{"pid": 1, "host": "another-host"}')
    monkeypatch.setenv(liveness.STALE_AFTER_ENV, "100")
    assert liveness.owner_alive(elsewhere)  # fresh heartbeat on another host: alive
    old = time.time() - 101
    os.utime(elsewhere / liveness.MARKER, (old, old))
    assert not liveness.owner_alive(elsewhere)  # stale: dead, whatever host
    (elsewhere / liveness.MARKER).write_text("not json")
    assert liveness.read_marker(elsewhere) is None and not liveness.owner_alive(elsewhere)
    unnamed = tmp_path / "unnamed"  # a marker of this host that names no process: its heartbeat decides
    unnamed.mkdir()
    (unnamed / liveness.MARKER).write_text(f'{{"host": "{socket.gethostname()}"}}')
    assert liveness.owner_alive(unnamed)
    os.utime(unnamed / liveness.MARKER, (old, old))
    assert not liveness.owner_alive(unnamed)


def test_only_a_pid_that_names_a_running_process_exists():
    child = os.fork()
    if child == 0:
        os._exit(0)
    os.waitpid(child, 0)
    assert liveness.process_exists(os.getpid()) and liveness.process_exists(1)  # init, whoever runs this
    assert not liveness.process_exists(child)  # ended
    assert not any(liveness.process_exists(pid) for pid in (0, -1, -os.getpid(), 2**40))  # groups, out of range


def test_another_users_running_job_is_alive():
    """A store shared by several users: a job of another user on this host refuses the pid check
    (EPERM), and its heartbeat decides, as for a job on another host."""
    assert liveness.process_exists(os.getppid())
    if os.geteuid() != 0:
        if os.stat("/proc/1").st_uid == os.geteuid():
            pytest.skip("needs a process of another user")
        assert liveness.process_exists(1)
        return
    child = os.fork()
    if child == 0:  # root: judge this process's job from a process of another user (nobody)
        code = 2
        try:
            os.setuid(65534)
            folder = Path(tempfile.mkdtemp())
            (folder / liveness.MARKER).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
            code = 0 if liveness.process_exists(os.getppid()) and liveness.owner_alive(folder) else 1
            shutil.rmtree(folder)
        finally:
            os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0


def test_the_heartbeat_runs_at_its_default_interval_without_the_setting(tmp_path, monkeypatch):
    monkeypatch.delenv(liveness.HEARTBEAT_ENV, raising=False)
    monkeypatch.setattr(liveness, "_thread", None)
    monkeypatch.setattr(liveness, "_registered", set())
    liveness.keep_alive(tmp_path)
    time.sleep(0.3)
    assert liveness._thread.is_alive()  # sleeping its 10 s, not failed on a missing setting


def test_owner_alive_leaves_a_live_process_alone_and_reads_defaults(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.delenv(liveness.STALE_AFTER_ENV, raising=False)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        folder = tmp_path / "other"
        folder.mkdir()
        (folder / liveness.MARKER).write_text(f'{{"pid": {sleeper.pid}, "host": "{socket.gethostname()}"}}')
        assert liveness.owner_alive(folder)
        time.sleep(0.2)
        assert sleeper.poll() is None  # asked whether it lives (signal 0), not signalled
    finally:
        sleeper.kill()
        sleeper.wait()
    no_pid = tmp_path / "no_pid"
    no_pid.mkdir()
    (no_pid / liveness.MARKER).write_text(f'{{"host": "{socket.gethostname()}"}}')
    liveness.owner_alive(no_pid)  # judged without a pid, never a TypeError
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / liveness.MARKER).write_text('{"pid": 1, "host": "another-host"}')
    assert liveness.owner_alive(elsewhere)  # fresh against the default five minutes
