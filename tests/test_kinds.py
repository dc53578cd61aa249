"""A result kind is declared once: a throwaway kind in a temporary package, with no other edit,
appears in the Python API, the CLI, the tables and views, the saved analyses and serve's reports."""

from __future__ import annotations

import sys
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
            reports={"probe": Report("quanta_db.results.probe.job:served", run_job="probe")},
            queries=QUERIES,
        )
    ''',
    "tables.py": '''
        import pyarrow as pa
        from quanta_db.store.tables import FactTable

        FACT_TABLES = [FactTable("probe_values", [("label", pa.string()), ("value", pa.int64())], ("label",),
                                 "Values a probe wrote.")]
    ''',
    "params.py": '''
        from dataclasses import dataclass
        from quanta_db.params import Force, JobParams, param

        @dataclass(frozen=True)
        class ProbeParams(JobParams, Force):
            """Write a few probe values."""

            label: str = param(nonblank=True, help="Label of the values.")
            n: int = param(3, min=1, help="How many.")
    ''',
    "job.py": '''
        import pyarrow as pa
        from quanta_db.job import Ingest, committed
        from quanta_db.params import job_function
        from quanta_db.results.probe.params import ProbeParams

        def _ingest_probe(store, params):
            job = Ingest(store, "probe", params.identity(), params.force)
            if job.previous:
                return job.skipped("already ingested")
            store.see(job.seen, "probe_values", label=params.label)
            with job.begin() as run:
                run.replace("probe_values", label=params.label)
                run.write("probe_values", pa.table({"label": [params.label] * params.n, "value": list(range(params.n))}))
                rows = run.commit()
            return committed(run, rows, f"probe {params.label}: {rows} rows")

        ingest_probe = job_function(ProbeParams, _ingest_probe)

        def served(store, run_id, options):
            n = store.query_df("SELECT count(*) AS n FROM probe_values")["n"][0]
            return "text/plain", f"probe run {run_id}: {n} values".encode()
    ''',
    "commands.py": '''
        from quanta_db.cli.params import job_command
        from quanta_db.results.probe.params import ProbeParams

        INGEST = [job_command("probe", ProbeParams, "quanta_db.results.probe.job:ingest_probe", create=True)]
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
    for name in [name for name in sys.modules if name.startswith("quanta_db.results.probe")]:
        del sys.modules[name]  # each test imports its own probe package afresh


@pytest.mark.slow
def test_a_new_kind_appears_everywhere_from_its_declaration(probe_kind, tmp_path):
    from starlette.testclient import TestClient

    from quanta_db.cli.main import cli
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


def test_a_column_a_newer_declaration_adds_is_added_by_migrate_and_reads_null_for_old_rows(probe_kind, tmp_path):
    """A release that declares one more column of a fact table: `quanta-db migrate` adds it to the
    lake table and its view, in its declared place, and the rows committed before read NULL there."""
    import pyarrow as pa

    from quanta_db.store.tables import FactTable

    store = quanta_db.open_store(tmp_path / "store", create=True)
    quanta_db.ingest_probe(store, label="a", n=2)
    tables = sys.modules["quanta_db.results.probe.tables"]
    wider = FactTable("probe_values", [("label", pa.string()), ("value", pa.int64()), ("note text", pa.string())],
                      ("label",), "Values a probe wrote.")
    tables.FACT_TABLES[:] = [wider]
    kinds.forget()
    store.migrate()
    assert store.query_arrow('SELECT label, value, "note text" FROM probe_values ORDER BY value').to_pydict() == {
        "label": ["a", "a"], "value": [0, 1], "note text": [None, None]}
    with store.write() as con:
        columns = con.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = 'tables' "
                              "AND table_name = 'probe_values' ORDER BY ordinal_position").fetchall()
    assert columns == [("label",), ("value",), ("note text",)]
