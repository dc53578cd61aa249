"""A result kind is declared once: a throwaway kind in a temporary package, with no other edit,
appears in the Python API, the CLI, the tables and views, the saved analyses and serve's reports."""

from __future__ import annotations

import textwrap

import pytest
from click.testing import CliRunner

import quanta_db
from quanta_db import kinds

PROBE = {
    "__init__.py": '''
        """A throwaway result kind."""
        from quanta_db.kinds import Report, ResultKind

        KIND = ResultKind(
            "probe",
            jobs={"ingest_probe": "quanta_db.results.probe.job"},
            tables="quanta_db.results.probe.tables",
            commands="quanta_db.results.probe.commands",
            reports={"probe": Report("quanta_db.results.probe.job:served", run_kind="probe")},
            queries=QUERIES,
        )
    ''',
    "tables.py": '''
        import pyarrow as pa
        from quanta_db.store.tables import FactTable

        FACT_TABLES = [FactTable("probe_values", [("label", pa.string()), ("value", pa.int64())], ("label",),
                                 "Values a probe wrote.")]
    ''',
    "job.py": '''
        import pyarrow as pa
        from quanta_db.job import JobResult, committed

        def ingest_probe(store, label: str, n: int) -> JobResult:
            params = {"label": label, "n": n}
            seen = store.observe("probe", params)
            if seen.previous:
                return JobResult(seen.previous, 0, skipped=True, message="already ingested")
            store.see(seen, "probe_values", label=label)
            with store.begin_run("probe", params, observation=seen) as run:
                run.replace("probe_values", label=label)
                run.write("probe_values", pa.table({"label": [label] * n, "value": list(range(n))}))
                rows = run.commit()
            return committed(run, rows, f"probe {label}: {rows} rows")

        def served(store, run_id, options):
            n = store.query_df("SELECT count(*) AS n FROM probe_values")["n"][0]
            return "text/plain", f"probe run {run_id}: {n} values".encode()
    ''',
    "commands.py": '''
        import click
        from cli.options import pass_store
        from quanta_db.results.probe.job import ingest_probe

        @click.command("probe")
        @click.option("--label", required=True)
        @click.option("--n", type=int, default=3)
        @pass_store
        def probe(ref, label, n):
            """Write a few probe values."""
            click.echo(ingest_probe(ref.open(create=True), label, n).message)

        INGEST = [probe]
        REPORT = []
    ''',
}


@pytest.fixture
def probe_kind(tmp_path, monkeypatch):
    import quanta_db.results

    folder = tmp_path / "kinds" / "probe"
    (folder / "queries").mkdir(parents=True)
    (folder / "queries" / "probe_total.sql").write_text(
        "-- name: probe_total\n-- description: Sum of the probe's values.\n\nSELECT sum(value) AS total FROM probe_values;\n")
    for name, text in PROBE.items():
        (folder / name).write_text(textwrap.dedent(text).replace("QUERIES", repr(str(folder / "queries"))))
    monkeypatch.setattr(quanta_db.results, "__path__", [*quanta_db.results.__path__, str(folder.parent)])
    kinds.forget()
    yield
    monkeypatch.undo()
    kinds.forget()


def test_a_new_kind_appears_everywhere_from_its_declaration(probe_kind, tmp_path):
    from starlette.testclient import TestClient

    from cli.main import cli
    from quanta_db.serve.app import Settings, create_app
    from quanta_db.store.registry import fact_tables

    assert "ingest_probe" in quanta_db.__all__ and callable(quanta_db.ingest_probe)
    assert "probe_values" in fact_tables()
    root = tmp_path / "store"
    listed = CliRunner().invoke(cli, ["ingest", "--help"])
    assert listed.exit_code == 0 and "probe" in listed.output and "Write a few probe values." in listed.output
    done = CliRunner().invoke(cli, ["--store", str(root), "ingest", "probe", "--label", "a", "--n", "4"])
    assert done.exit_code == 0 and "probe a: 4 rows" in done.output, done.output
    store = quanta_db.open_store(root)
    assert store.query_df("SELECT value FROM probe_values ORDER BY value")["value"].tolist() == [0, 1, 2, 3]
    assert store.query_df("SELECT * FROM probe_total")["total"].tolist() == [6]
    (run_id,) = store.query_df("SELECT run_id FROM runs WHERE kind = 'probe'")["run_id"]
    with TestClient(create_app(Settings(root)), base_url="http://localhost") as http:
        assert f'href="/reports/probe/{run_id}"' in http.get("/").text
        page = http.get(f"/reports/probe/{run_id}")
        assert page.status_code == 200 and page.text == f"probe run {run_id}: 4 values"
        unknown = http.get("/reports/nope/x")
        assert unknown.status_code == 400 and "(clusters, features, heatmap, probe, trajectories)" in unknown.text


def test_the_shipped_kinds_declare_what_the_api_exported_before():
    assert set(quanta_db.__all__) >= {"open_store", "__version__", "ingest_corpus", "ingest_contexts", "ingest_dm_math",
                                      "ingest_filters", "ingest_losses", "ingest_clusters", "ingest_sae", "ingest_heads",
                                      "ingest_trajectories", "ingest_feature_pairs", "ingest_feature_matches",
                                      "ingest_metrics"}
    assert set(kinds.reports()) == {"clusters", "features", "trajectories", "heatmap"}
    with pytest.raises(AttributeError):
        quanta_db.ingest_nothing  # noqa: B018
