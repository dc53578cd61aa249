"""Run one `quanta-db` command in a subprocess whose commit waits at a barrier, so tests can
make real processes overlap exactly where a race would hurt: after each decided and computed,
before either commits.

    python tests/concurrent_job.py BARRIER_DIR NAME [--wait-ready OTHER]... [--after OTHER] \
        [--wait-go] [--host NAME] -- quanta-db arguments...

Before its commit the job writes BARRIER_DIR/NAME.ready, then waits until every --wait-ready
job is ready, every --after job has finished (NAME.done) and, with --wait-go, until GO exists.
--host makes the job report another host name, as a job on another machine would.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

TIMEOUT_S = 120


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"barrier: timed out waiting for {path.name}")
        time.sleep(0.02)


def _signal(path: Path, text: str) -> None:
    """Write then rename, so a waiting reader never sees the file empty."""
    path.with_suffix(".tmp").write_text(text)
    os.replace(path.with_suffix(".tmp"), path)


def main() -> None:
    split = sys.argv.index("--")
    own, cli_args = sys.argv[1:split], sys.argv[split + 1:]
    barrier, name = Path(own[0]), own[1]
    waits = [own[i + 1] for i, a in enumerate(own) if a == "--wait-ready"]
    after = [own[i + 1] for i, a in enumerate(own) if a == "--after"]
    wait_go = "--wait-go" in own
    hosts = [own[i + 1] for i, a in enumerate(own) if a == "--host"]
    if hosts:  # pretend to run on another machine sharing the store
        import socket

        socket.gethostname = lambda: hosts[0]

    from quanta_db.store.runs import Run

    original = Run.commit

    def commit_at_barrier(self):
        _signal(barrier / f"{name}.ready", self.run_id)
        for other in waits:
            _wait_for(barrier / f"{other}.ready")
        for other in after:
            _wait_for(barrier / f"{other}.done")
        if wait_go:
            _wait_for(barrier / "GO")
        try:
            return original(self)
        finally:
            _signal(barrier / f"{name}.done", self.run_id)

    Run.commit = commit_at_barrier
    from quanta_db.cli.main import main as cli_main

    sys.argv = ["quanta-db", *cli_args]
    cli_main()


if __name__ == "__main__":
    main()
