"""A store written by the last release with the file catalog (quanta-db 0.1: ``catalog.duckdb``),
for the test that ``quanta-db migrate`` upgrades one without losing anything: the release's own
code is taken from this repository's history (``git archive``) and runs in a child interpreter
that imports it instead of today's."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import duckdb

REPOSITORY = Path(__file__).resolve().parent.parent
RELEASE_COMMIT = "723a73630a8f371a0786c9e4ab04a4cf040533e4"  # the last commit of quanta-db 0.1's store
RELEASE_PATHS = ("quanta_db", "cli", "migrations", "queries", "tests")


def release_checkout(folder: Path) -> Path | None:
    """The release's code under ``folder``; None where this is not a git checkout holding it."""
    try:
        archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", RELEASE_COMMIT, *RELEASE_PATHS],
                                 capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder


def build_with_release(release: Path, store_path: Path) -> None:
    """The identity store (tests/identity_store.py), built by the release's code."""
    env = {**os.environ, "PYTHONPATH": str(release)}
    script = "import sys; from tests.identity_store import build; build(sys.argv[1])"
    subprocess.run([sys.executable, "-c", script, str(store_path)], cwd=release, env=env, check=True)


def legacy_rows(store_path: Path, tables: list[str], round_doubles: bool = False) -> dict[str, list[str]]:
    """Every row of ``tables`` as the release's catalog shows them; with ``round_doubles`` (the
    catalog tables) floats as the lake keeps a catalog DOUBLE (``lake.storable``: 15 significant
    digits), the fact tables' Parquet files keeping theirs exactly."""
    from quanta_db.store.lake import storable

    kept = storable if round_doubles else (lambda value: value)
    with duckdb.connect(str(store_path / "catalog.duckdb"), read_only=True) as con:
        present = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        return {table: sorted(repr(tuple(map(kept, row))) for row in con.execute(f'SELECT * FROM "{table}"').fetchall())
                for table in tables if table in present}  # tables added since the release: nothing to keep
