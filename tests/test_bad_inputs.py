"""Bad input to any command: one clear line, a non-zero exit, and the store exactly as before —
nothing committed, nothing left staged (issue 20, part 3)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from click.testing import CliRunner

from quanta_db.cli.main import cli
from tests.helpers import staging_entries

CASES = {  # name: (arguments after --store DIR, the error names this)
    "grad_memory_zero": (["ingest", "clusters", "--model", "small", "--step", "8", "--corpus", "toy",
                          "--grad-memory-gb", "0", "--no-progress"], "--grad-memory-gb"),
    "grad_memory_negative": (["ingest", "clusters", "--model", "small", "--step", "8", "--corpus", "toy",
                              "--grad-memory-gb", "-1", "--no-progress"], "--grad-memory-gb"),
    "loss_below_nan": (["ingest", "clusters", "--model", "small", "--step", "8", "--corpus", "toy",
                        "--loss-below", "nan", "--no-progress"], "--loss-below"),
    "min_corr_nan": (["ingest", "feature-matches", "--pairing", "r0", "--method", "argmax", "--min-corr", "nan"], "--min-corr"),
    "min_corr_two": (["ingest", "feature-matches", "--pairing", "r0", "--method", "argmax", "--min-corr", "2"], "--min-corr"),
    "no_metrics": (["ingest", "metrics", "--matching", "r0", "--metrics", ""], "--metrics names none"),
    "too_many_components": (["ingest", "trajectories", "--models", "small,large", "--corpus", "toy",
                             "--components", "500"], "at most 5"),
    "contexts_over_their_source": (["ingest", "contexts", "--from", "toy", "--name", "toy", "--force"],
                                   "source corpus itself"),
    "report_unknown_corpus": (["report", "tokens", "--corpus", "nope", "--loss", "small@8"], "unknown corpus 'nope'"),
    "report_empty_pane": (["report", "tokens", "--corpus", "toy", "--loss", "nope@256"], "has no value"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_is_one_line_and_changes_nothing(losses_store, store_snapshot, tmp_path, monkeypatch, name):  # noqa: F811
    arguments, says = CASES[name]
    monkeypatch.chdir(tmp_path)
    before = store_snapshot(losses_store)
    result = CliRunner().invoke(cli, ["--store", str(losses_store.root), *arguments])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert says in lines[0], lines[0]
    assert store_snapshot(losses_store) == before
    assert staging_entries(losses_store) == []
    assert not list(tmp_path.glob("*.html"))


@pytest.mark.slow
def test_non_utf8_dm_math_file_is_named(store, toy_inputs, tmp_path):
    folder = tmp_path / "released"
    folder.mkdir()
    (folder / "algebra__linear_1d.txt").write_bytes(b"Solve 2x = 4.\n2\n\xff\xfe broken\n1\n")
    result = CliRunner().invoke(cli, ["--store", str(store.root), "ingest", "dm-math", "--source", str(folder),
                                      "--name", "dm", "--tokenizer", str(toy_inputs["tokenizer"])])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1, result.output
    assert "algebra__linear_1d.txt is not UTF-8" in lines[0]


def test_trajectories_fit_models_with_too_few_checkpoints_for_events(losses_store, toy_model):  # noqa: F811
    from quanta_db.results.losses.job import ingest_losses
    from quanta_db.results.trajectories.job import ingest_trajectories

    ingest_losses(losses_store, str(toy_model["dir"]), "toy", name="single", steps=[8], progress=False)
    ingest_losses(losses_store, str(toy_model["dir"]), "toy", name="pair", steps=[0, 8], progress=False)
    result = ingest_trajectories(losses_store, ["small", "single", "pair"], "toy", components=2, device="cpu")
    assert "no curvature events for small, single, pair (fewer than 7 checkpoints)" in result.message
    scores = losses_store.query_df("SELECT model, count(*) AS n FROM trajectory_scores GROUP BY model ORDER BY model")
    assert dict(zip(scores.model, scores.n)) == {"pair": 4, "single": 2, "small": 6}  # rows x 2 components
    assert losses_store.query_df("SELECT count(*) AS n FROM trajectory_events")["n"][0] == 0
    stored = losses_store.query_df("SELECT models_without_events FROM trajectory_fits")["models_without_events"][0]
    assert list(stored) == ["small", "single", "pair"]


def test_no_progress_means_no_bar_at_all(corpus_store, toy_model, tmp_path):
    """transformers draws its own "Loading weights" bar; --no-progress silences it too. Run in a
    fresh interpreter, so an earlier test's settings do not hide the bar."""
    import subprocess
    import sys
    from pathlib import Path

    command = [sys.executable, "-c", "from quanta_db.cli.main import main; main()", "--store", str(corpus_store.root),
               "ingest", "heads", "--model", str(toy_model["dir"]), "--step", "8", "--corpus", "toy", "--max-docs", "2",
               "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    assert "Loading" not in done.stderr and "%|" not in done.stderr, done.stderr


def test_an_unreachable_or_refusing_catalog_server_is_one_line_and_makes_nothing(tmp_path, monkeypatch):
    """init --catalog on a PostgreSQL that is not there (or refuses the password) leaves no store."""
    monkeypatch.delenv("PGPASSWORD", raising=False)
    targets = ["postgresql://nobody@127.0.0.1:9/none"]  # nothing listens on port 9
    if os.environ.get("QUANTA_DB_TEST_POSTGRES"):
        real = urlsplit(os.environ["QUANTA_DB_TEST_POSTGRES"])
        targets.append(f"postgresql://{real.username}:wrong-password@{real.hostname}:{real.port}{real.path}")
    for url in targets:
        result = CliRunner().invoke(cli, ["--store", str(tmp_path / "s"), "init", "--catalog", url])
        assert result.exit_code == 1, result.output
        assert len(result.output.strip().splitlines()) == 1 and "cannot open the catalog" in result.output
        assert 'connection to server at "127.0.0.1"' in result.output  # psycopg's own account of what failed
        assert not (tmp_path / "s").exists()
        (tmp_path / "kept").mkdir(exist_ok=True)
        result = CliRunner().invoke(cli, ["--store", str(tmp_path / "kept"), "init", "--catalog", url])
        assert result.exit_code == 1 and list((tmp_path / "kept").iterdir()) == []


def test_a_catalog_session_is_autocommit_and_bounded_in_time(monkeypatch):
    """Sessions on the catalog server commit each statement (a reader's session left in a transaction
    would hold its locks and snapshot) and give up on a server that does not answer instead of
    hanging; without psycopg the error says which extra to install."""
    import sys

    import psycopg

    from quanta_db.errors import StoreError
    from quanta_db.store import kept, lake

    locator = lake.Locator(root=Path("unused"), url="postgresql://someone@db.example/quanta", schema="quanta_x")
    opened = []
    monkeypatch.setattr(psycopg, "connect", lambda *args, **options: opened.append((args, options)) or "session")
    assert kept.connect(locator) == "session"
    (args, options), = opened
    assert args == (locator.url,) and options["autocommit"] is True
    assert 0 < options["connect_timeout"] <= 30  # seconds
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what an install without the extra sees
    with pytest.raises(StoreError) as refused:
        kept.connect(locator)
    assert str(refused.value) == "this store's catalog is on PostgreSQL: pip install 'quanta-db[postgres]'"


def test_a_store_whose_postgresql_schema_is_gone_is_one_line(store):
    """catalog.json names a schema someone dropped: every command says so in one line."""
    import json

    import psycopg

    if not store.catalog().startswith("postgresql"):
        pytest.skip("a catalog on PostgreSQL only")
    schema = json.loads((store.root / "catalog.json").read_text())["schema"]
    with psycopg.connect(os.environ["QUANTA_DB_TEST_POSTGRES"], autocommit=True) as session:
        session.execute(f'DROP SCHEMA "{schema}" CASCADE')
    for command in (["status"], ["query", "SELECT 1"]):
        result = CliRunner().invoke(cli, ["--store", str(store.root), *command])
        assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
        assert "cannot open the catalog" in result.output and schema in result.output


def test_a_change_stamp_session_the_server_ended_is_opened_again(store):
    """The session kept for change stamps (one per process) survives the server ending it: the
    next query opens a new one; an unreachable server is still one line."""
    import dataclasses

    import psycopg

    from quanta_db.errors import StoreError
    from quanta_db.store import catalog, kept

    if not store.catalog().startswith("postgresql"):
        pytest.skip("a catalog on PostgreSQL only")
    assert store.query_df("SELECT count(*) AS n FROM runs")["n"].tolist() == [0]
    locator = catalog.locate(store.root)
    before = kept._reading[locator.connection_url()]
    with psycopg.connect(os.environ["QUANTA_DB_TEST_POSTGRES"], autocommit=True) as session:
        session.execute("SELECT pg_terminate_backend(%s)", [before.info.backend_pid])
    assert catalog.change_stamp(store.root) == (catalog._latest_snapshot(locator),)
    assert kept._reading[locator.connection_url()] is not before
    assert kept.reading_session(locator) is kept._reading[locator.connection_url()]  # kept from now on
    real = urlsplit(os.environ["QUANTA_DB_TEST_POSTGRES"])
    kept._reading[locator.connection_url()].close()
    unreachable = dataclasses.replace(locator, url=f"postgresql://{real.username}@{real.hostname}:1{real.path}")
    with pytest.raises(StoreError, match="cannot open the catalog"):
        catalog._latest_snapshot(unreachable)


def test_a_metadata_read_the_server_keeps_ending_is_tried_once_more_then_one_line(store):
    """A read whose session the server ends is tried once more on a new session, then given up
    in one line (not retried for ever); the next read opens a session again."""
    import psycopg

    from quanta_db.errors import StoreError
    from quanta_db.store import catalog, kept

    if not store.catalog().startswith("postgresql"):
        pytest.skip("a catalog on PostgreSQL only")
    locator = catalog.locate(store.root)
    sessions = []

    def ended(session):
        sessions.append(session)
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    with pytest.raises(StoreError, match="cannot open the catalog .*: server closed the connection"):
        kept.read(locator, ended)
    assert len(sessions) == 2 and sessions[0] is not sessions[1] and all(s.closed for s in sessions)
    assert kept.read(locator, lambda session: session.execute("SELECT 1").fetchone()[0]) == 1


def test_a_catalog_url_that_is_not_postgresql_is_refused(tmp_path):
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "s"), "init", "--catalog", "mysql://x@y/z"])
    assert result.exit_code != 0 and "postgresql://" in result.output and not (tmp_path / "s").exists()


def test_a_lake_written_by_a_newer_ducklake_is_one_line_and_left_alone(store, store_snapshot):
    from quanta_db.store.catalog import connect

    if store.catalog().startswith("postgresql"):
        pytest.skip("the format version lives in the metadata schema; tested on the local file")
    with connect(store.root, read_only=False) as con:  # as a newer DuckLake would have marked it
        con.execute("UPDATE __ducklake_metadata_lake.ducklake_metadata SET value = '9.0' WHERE key = 'version'")
    metadata = (store.root / "catalog.ducklake").read_bytes()
    result = CliRunner().invoke(cli, ["--store", str(store.root), "status"])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1, result.output
    assert "cannot open the catalog" in result.output and "9.0" in result.output, result.output  # DuckLake's own line
    assert (store.root / "catalog.ducklake").read_bytes() == metadata
