"""Every command: help text, a working call, and one-line errors that leave the store as it was."""

import json

import pytest
from click.testing import CliRunner

from quanta_db.cli.main import cli
from quanta_db.cli.reference import walk


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args, input=None):
        return runner.invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)

    return invoke


def _assert_one_line_error(result, pattern):
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert pattern in lines[0]
    assert "Traceback" not in result.output


def test_every_command_has_help(run):
    for path, command in walk(cli, []):
        result = run(*path, "--help")
        assert result.exit_code == 0, path
        assert command.help, f"{path} has no help text"


@pytest.mark.slow
def test_init_status_views_query(run, tmp_path):
    from quanta_db.store.migrations import discover

    latest = discover()[-1].version
    store = tmp_path / "s"
    assert f"schema version {latest}" in run("--store", store, "init").output
    status = run("--store", store, "status").output
    assert "tokens" in status and f"schema version {latest}" in status
    assert "tokens_per_subset" in run("--store", store, "views").output
    shown = run("--store", store, "views", "tokens_per_subset").output
    assert shown.startswith("-- name: tokens_per_subset") and "FROM documents" in shown
    assert "migrations" not in run("--store", store, "views", "--refresh").output
    listing = run("--store", store, "migrate", "--list").output
    assert "0001  core" in listing and "applied" in listing
    assert "nothing to apply" in run("--store", store, "migrate").output


@pytest.mark.slow
def test_ingest_then_query_in_every_format(run, tmp_path, toy_inputs):
    store = tmp_path / "s"
    out = run("--store", store, "ingest", "corpus", toy_inputs["corpus"], "--name", "toy",
              "--tokenizer", toy_inputs["tokenizer"], "--max-tokens", 64, "--no-progress")
    assert out.exit_code == 0 and "committed run" in out.output
    again = run("--store", store, "ingest", "corpus", toy_inputs["corpus"], "--name", "toy",
                "--tokenizer", toy_inputs["tokenizer"], "--max-tokens", 64, "--no-progress")
    assert again.output.startswith("skipped")
    sql = "SELECT corpus, count(*) AS n FROM tokens GROUP BY corpus"
    assert "toy" in run("--store", store, "query", sql).output
    assert run("--store", store, "query", sql, "--format", "csv").output.startswith("corpus,n\ntoy,")
    served = json.loads(run("--store", store, "query", sql, "--format", "json").output)  # serve's JSON, too
    assert [c["name"] for c in served["columns"]] == ["corpus", "n"] and served["row_count"] == 1
    assert served["rows"][0][0] == "toy" and served["rows"][0][1] > 0 and not served["truncated"]
    slow = run("--store", store, "query", "SELECT count(*) FROM range(10000000000)", "--time-limit-ms", 50)
    assert slow.exit_code != 0 and "stopped by the time limit (50 ms)" in slow.output
    assert run("--store", store, "query", sql, "--format", "markdown").output.startswith("| corpus | n |\n|---|---|")
    assert "\\toprule" in run("--store", store, "query", sql, "--format", "latex").output
    assert "toy" in run("--store", store, "query", input=sql).output
    sql_file = tmp_path / "q.sql"
    sql_file.write_text(sql)
    assert "toy" in run("--store", store, "query", "-f", sql_file).output
    target = tmp_path / "out.parquet"
    run("--store", store, "query", sql, "--format", "parquet", "-o", target)
    import pyarrow.parquet as pq

    assert pq.read_table(target).column("corpus").to_pylist() == ["toy"]
    latex = run("--store", store, "export", "latex", "tokens_per_subset", "--max", "n_tokens", "--label", "tab:x")
    assert latex.exit_code == 0 and "\\label{tab:x}" in latex.output and "\\bfseries" in latex.output


@pytest.mark.slow
def test_errors_are_one_line(run, tmp_path, toy_inputs, store_snapshot):
    from quanta_db.store.store import Store

    store_dir = tmp_path / "s"
    store = Store.init(store_dir)
    before = store_snapshot(store)
    _assert_one_line_error(run("--store", store_dir, "query", "SELEC 1"), "syntax error")
    _assert_one_line_error(run("--store", store_dir, "query", "SELECT * FROM nope"), "nope")
    _assert_one_line_error(run("--store", store_dir, "query", "CREATE TABLE x (a INT)"), "only SELECT")
    _assert_one_line_error(run("--store", store_dir, "query", "DROP VIEW tokens"), "only SELECT")
    _assert_one_line_error(run("--store", store_dir, "export", "latex", "no_such_view"), "unknown table or view")
    _assert_one_line_error(run("--store", store_dir, "export", "latex", "tokens_per_subset", "--max", "zzz"),
                           "column 'zzz'")
    _assert_one_line_error(run("--store", store_dir, "views", "nope"), "unknown saved query")
    _assert_one_line_error(run("--store", store_dir, "query", "SELECT 1", "--format", "parquet"), "-o FILE")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{oops\n')
    _assert_one_line_error(run("--store", store_dir, "ingest", "corpus", bad, "--name", "b", "--tokenizer",
                               toy_inputs["tokenizer"], "--no-progress"), "not JSON")
    _assert_one_line_error(run("--store", store_dir, "ingest", "corpus", toy_inputs["corpus"], "--name", "b",
                               "--tokenizer", tmp_path / "no-tokenizer", "--no-progress"), "does not load")
    _assert_one_line_error(run("--store", store_dir, "ingest", "corpus", tmp_path / "missing.jsonl", "--name", "b",
                               "--tokenizer", toy_inputs["tokenizer"]), "does not exist")
    for args, message in [(("losses", "--model", "m", "--corpus", "c", "--shard", "1-2"), "--shard expects i/n"),
                          (("heads", "--model", "m", "--corpus", "c", "--vocab-range", "5"), "--vocab-range expects"),
                          (("trajectories", "--models", "a,b", "--corpus", "c", "--smooth", "1;2"), "--smooth expects")]:
        _assert_one_line_error(run("--store", store_dir, "ingest", *args), message)
    assert store_snapshot(store) == before


def test_not_a_store_and_newer_store(run, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hello")
    _assert_one_line_error(run("--store", plain, "status"), "not a quanta-db store")
    _assert_one_line_error(run("--store", plain, "init"), "not empty")
    _assert_one_line_error(run("--store", tmp_path / "missing", "query", "SELECT 1"), "does not exist")
    from quanta_db.store.catalog import connect

    newer = tmp_path / "newer"
    run("--store", newer, "init")
    with connect(newer, read_only=False) as con:
        con.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'x', now())")
    for args in (("status",), ("query", "SELECT 1"), ("migrate",)):
        _assert_one_line_error(run("--store", newer, *args), "newer than this quanta-db")


def test_gc_reports(run, tmp_path):
    store = tmp_path / "s"
    run("--store", store, "init")
    (store / "staging" / "r-dead").mkdir(parents=True)
    assert "removed 1 staging folder(s)" in run("--store", store, "gc").output


def test_generated_documentation_is_current():
    from pathlib import Path

    from quanta_db.cli.reference import HOMES, readme_section

    repository = Path(__file__).resolve().parent.parent
    for name, home in HOMES.items():
        page = (repository / home).read_text()
        assert readme_section(name) in page, f"{home}: {name} is stale: run `python -m quanta_db.cli.reference --write`"


def test_the_readme_is_a_front_page_linking_every_page_of_the_documentation():
    from pathlib import Path

    repository = Path(__file__).resolve().parent.parent
    readme = (repository / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for page in sorted((repository / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in readme, f"README does not link docs/{page.name}"


def test_loss_pipeline_commands(run, tmp_path, toy_inputs, toy_model):
    store = tmp_path / "s"
    run("--store", store, "ingest", "corpus", toy_inputs["corpus"], "--name", "toy", "--tokenizer",
        toy_inputs["tokenizer"], "--max-tokens", 48, "--no-progress")
    out = run("--store", store, "ingest", "losses", "--model", toy_model["dir"], "--name", "tiny", "--corpus", "toy",
              "--steps", "0,8", "--no-progress")
    assert out.exit_code == 0 and out.output.count("committed run") == 2, out.output
    again = run("--store", store, "ingest", "losses", "--model", toy_model["dir"], "--name", "tiny", "--corpus", "toy",
                "--steps", "0,8", "--no-progress")
    assert again.output.count("skipped") == 2
    assert "committed run" in run("--store", store, "ingest", "filters", "--corpus", "toy", "--kind", "induction",
                                  "--no-progress").output
    assert "committed run" in run("--store", store, "ingest", "contexts", "--from", "toy", "--name", "ctx",
                                  "--per-subset", 3, "--length", 16).output
    dm = tmp_path / "dm"
    dm.mkdir()
    (dm / "arithmetic__add.txt").write_text("What is 1 + 1?\n2\nWhat is 2 + 3?\n5\n")
    assert "2 problems in 1 categories" in run("--store", store, "ingest", "dm-math", "--name", "dm", "--tokenizer",
                                               toy_inputs["tokenizer"], "--source", dm).output
    steps = run("--store", store, "query", "SELECT DISTINCT step FROM stepwise_difference", "--format", "csv").output
    assert steps.split() == ["step", "8"]
    clustered = run("--store", store, "ingest", "clusters", "--model", "tiny", "--step", 8, "--corpus", "toy",
                    "--loss-below", 10, "--n-tokens", 30, "--skip", 2, "--n-clusters", 3, "--n-init", 2,
                    "--exclude-filter", "bigram", "--no-progress")
    assert clustered.exit_code == 0 and "into 3 clusters" in clustered.output, clustered.output
    run_id = clustered.output.split()[2].rstrip(":")
    page = tmp_path / "c.html"
    assert "wrote" in run("--store", store, "report", "clusters", run_id, "-o", page, "--before", 20).output
    assert page.read_text().startswith("<!DOCTYPE html>")
    _assert_one_line_error(run("--store", store, "report", "clusters", "r-missing", "-o", page), "unknown clustering")
    _assert_one_line_error(run("--store", store, "ingest", "clusters", "--model", "tiny", "--step", 8, "--corpus",
                               "toy", "--loss-below", 0, "--no-progress"), "no token")
    _assert_one_line_error(run("--store", store, "ingest", "losses", "--model", toy_model["dir"], "--corpus", "toy",
                               "--steps", "3", "--no-progress"), "no checkpoint for step")
    _assert_one_line_error(run("--store", store, "ingest", "losses", "--model", toy_model["dir"], "--corpus", "toy",
                               "--shard", "5/2"), "--shard")
    _assert_one_line_error(run("--store", store, "ingest", "losses", "--model", tmp_path / "nomodel",
                               "--corpus", "toy"), "not a folder")
    _assert_one_line_error(run("--store", store, "ingest", "losses", "--model", toy_model["dir"], "--corpus", "toy",
                               "--batch-size", "x"), "--batch-size")


def test_empty_names_and_row_limits_are_refused(run, tmp_path, toy_inputs, store_snapshot):
    store_dir = tmp_path / "s"
    run("--store", store_dir, "init")
    from quanta_db.store.store import Store

    before = store_snapshot(Store.open(store_dir))
    for name in ("", "  "):
        _assert_one_line_error(run("--store", store_dir, "ingest", "corpus", toy_inputs["corpus"], "--name", name,
                                   "--tokenizer", toy_inputs["tokenizer"]), "--name must not be empty")
    result = run("--store", store_dir, "query", "SELECT 1", "--max-rows", "-1")
    assert result.exit_code != 0 and "--max-rows" in result.output
    assert store_snapshot(Store.open(store_dir)) == before
