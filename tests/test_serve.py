"""quanta-db serve: every endpoint and error through the ASGI test client, a live server under
concurrent load while an ingest commits, and the pages in headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import threading
import time

import pyarrow.parquet as pq
import pytest

from quanta_db.serve.app import live_server
from tests.helpers import headless_page


@pytest.fixture
def client(losses_store):  # noqa: F811
    from starlette.testclient import TestClient

    from quanta_db.serve.app import Settings, create_app

    app = create_app(Settings(losses_store.root, time_limit_ms=1500, max_rows=50))
    with TestClient(app, base_url="http://localhost") as test_client:
        yield test_client, losses_store


def test_home_lists_store_tables_analyses_and_runs(client):
    http, store = client
    page = http.get("/").text
    n = store.query_df("SELECT count(*) AS n FROM token_losses")["n"][0]
    assert f'<a href="/tables/token_losses">token_losses</a></td><td>fact</td><td>{n}</td>' in page
    assert '<a href="/analyses/loss_curve">loss_curve</a>' in page and "corpus_name, document_id := 0" in page
    assert all(run in page for run in store.query_df("SELECT run_id FROM runs").run_id)


def test_table_pages_are_stable_filtered_and_sorted(client):
    http, store = client
    first = http.get("/tables/token_losses?f.model=small&sort=loss_nats&desc=1")
    assert first.status_code == 200 and 'id="next"' in first.text
    api = http.get("/api/tables/token_losses?f.model=small&sort=loss_nats&desc=1&limit=50").json()
    expected = store.query_df("SELECT loss_nats FROM token_losses WHERE model = 'small' ORDER BY loss_nats DESC "
                              "LIMIT 50").loss_nats
    assert [row[api["columns"].index(next(c for c in api["columns"] if c["name"] == "loss_nats"))] for row in api["rows"]] \
        == pytest.approx(list(expected))
    second = http.get("/api/tables/token_losses?f.model=small&sort=loss_nats&desc=1&limit=50&offset=50").json()
    assert not {tuple(map(str, r)) for r in api["rows"]} & {tuple(map(str, r)) for r in second["rows"]}
    assert http.get("/tables/token_losses?sort=nope").status_code == 400
    assert "unknown table" in http.get("/tables/secrets").text


def test_saved_analysis_form_results_and_bad_parameters(client):
    http, store = client
    empty = http.get("/analyses/corpus_tokens")
    assert "fill in the required parameters" in empty.text and 'name="corpus_name"' in empty.text
    filled = http.get("/analyses/corpus_tokens?corpus_name=toy&document_id=2")
    rows = store.query_df("SELECT * FROM corpus_tokens('toy', document_id := 2)")
    assert filled.status_code == 200 and f"{min(len(rows), 50)} rows" in filled.text
    assert "SELECT * FROM &#34;corpus_tokens&#34;(&#39;toy&#39;, document_id := 2)" in filled.text
    api = http.get("/api/views/corpus_tokens?corpus_name=toy&document_id=2").json()
    assert api["row_count"] == min(len(rows), 50) and api["truncated"] == (len(rows) > 50)
    bad = http.get("/api/views/corpus_tokens?corpus_name=toy&document_id=abc")
    assert bad.status_code == 400 and "Could not convert string 'abc'" in bad.json()["error"]
    assert "needs corpus_name" in http.get("/api/views/corpus_tokens").json()["error"]
    assert "no parameter(s) nope" in http.get("/api/views/loss_curve?nope=1").json()["error"]
    assert "unknown saved analysis" in http.get("/analyses/nope").text


@pytest.mark.parametrize("sql, message", [
    ("DELETE FROM runs", "only SELECT queries"),
    ("CREATE TABLE x AS SELECT 1", "only SELECT queries"),
    ("SELECT 1; SELECT 2", "one SQL statement at a time"),
    ("SELECT * FROM read_csv('/etc/passwd')", "Cannot access file"),
    ("ATTACH 'x.db'", "only SELECT queries"),
    ("SELEC 1", "syntax error"),
    ("SELECT count(*) FROM range(100000000000) a, range(100) b", "time limit (1500 ms)"),
])
def test_sql_errors_are_reported_and_change_nothing(client, store_snapshot, sql, message):
    http, store = client
    before = store_snapshot(store)
    for url in (f"/sql?sql={sql}", f"/api/query?sql={sql}", f"/download?sql={sql}&format=csv"):
        response = http.get(url)
        assert response.status_code == 400 and message in response.text, (url, response.text[:300])
    assert store_snapshot(store) == before


def test_json_is_typed_and_the_row_limit_is_reported(client):
    http, _ = client
    body = http.get("/api/query?sql=SELECT 1 AS a, NULL AS b, 'nan'::DOUBLE AS c, '-inf'::DOUBLE AS d, "
                    "9007199254740993 AS e, 2.5 AS f, [1, NULL] AS g").json()
    assert body["rows"] == [[1, None, "NaN", "-Infinity", "9007199254740993", 2.5, [1, None]]]
    # the column's Arrow type as DuckDB gives it (a bare NULL is "null" in duckdb 2, int32 in 1.5)
    assert body["columns"][0]["type"] == "int32" and body["columns"][1]["type"] in ("null", "int32")
    limited = http.get("/api/query?sql=SELECT * FROM range(80)").json()
    assert limited["row_count"] == 50 and limited["truncated"]
    page = http.get("/sql?sql=SELECT * FROM range(80)").text
    assert "stopped at the row limit (50)" in page
    runs = http.get("/api/runs").json()
    assert runs["row_count"] >= 2 and {c["name"] for c in runs["columns"]} >= {"run_id", "kind", "params"}


def test_downloads_equal_the_query(client):
    http, store = client
    sql = "SELECT model, step, doc_id, pos, loss_nats FROM token_losses ORDER BY ALL LIMIT 20"
    expected = store.query_df(sql)
    rows = list(csv.DictReader(io.StringIO(http.get("/download", params={"sql": sql, "format": "csv"}).text)))
    assert [float(r["loss_nats"]) for r in rows] == pytest.approx(list(expected.loss_nats))
    parquet = pq.read_table(io.BytesIO(http.get("/download", params={"sql": sql, "format": "parquet"}).content))
    import pandas as pd

    pd.testing.assert_frame_equal(parquet.to_pandas(), expected, check_dtype=False)
    assert json.loads(http.get("/download", params={"sql": sql, "format": "json"}).text)["row_count"] == 20
    tex = http.get("/download", params={"sql": sql, "format": "latex"}).text
    assert "\\toprule" in tex and "loss\\_nats" in tex
    assert http.get("/download", params={"sql": sql, "format": "xls"}).status_code == 400


def test_values_are_escaped_and_sql_is_never_evaluated(client):
    http, _ = client
    page = http.get("/sql", params={"sql": "SELECT '<script>alert(1)</script>' AS \"<b>x</b>\""}).text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>x</b>" not in page


def test_a_token_guards_every_page(losses_store):  # noqa: F811
    from starlette.testclient import TestClient

    from quanta_db.serve.app import Settings, create_app

    with TestClient(create_app(Settings(losses_store.root, token="s3cret")), base_url="http://localhost") as http:
        assert http.get("/").status_code == 401 and http.get("/api/runs").status_code == 401
        assert http.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert http.get("/?token=wrong").status_code == 401 and http.get("/?token=s3cre").status_code == 401
        traded = http.get("/tables/runs?sort=kind&token=s3cret", follow_redirects=False)
        assert traded.status_code == 303 and "token" not in traded.headers["location"]  # sets the cookie
        assert traded.headers["location"] == "/tables/runs?sort=kind"
        assert http.get("/api/runs").status_code == 200
        page = http.get("/tables/runs?sort=kind").text
        assert "s3cret" not in page


def test_foreign_hosts_and_cross_site_requests_are_refused(client):
    http, _ = client
    sql = "/api/query?sql=SELECT%201"
    assert http.get(sql).status_code == 200
    assert http.get(sql, headers={"Host": "localhost:8000"}).status_code == 200
    assert http.get(sql, headers={"Host": "[::1]:8000"}).status_code == 200
    for host in ("evil.example", "localhost.evil.example", "127.0.0.2", ""):
        refused = http.get(sql, headers={"Host": host})
        assert refused.status_code == 403 and "not served here" in refused.text, host
    for origin in ("http://evil.example", "null", "http://localhost:9999"):
        assert http.get(sql, headers={"Origin": origin}).status_code == 403, origin
    assert http.get(sql, headers={"Origin": "http://localhost"}).status_code == 200
    assert http.get(sql, headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert http.get(sql, headers={"Sec-Fetch-Site": "same-site"}).status_code == 403
    assert http.get(sql, headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200


def test_a_query_over_the_memory_limit_fails_in_one_line(losses_store):  # noqa: F811
    from starlette.testclient import TestClient

    from quanta_db.errors import InputError
    from quanta_db.serve.app import Settings, create_app

    # DuckLake's own reading of its catalog needs about 20 MB, so the limit is above that.
    with TestClient(create_app(Settings(losses_store.root, memory_limit="100MB")), base_url="http://localhost") as http:
        big = http.get("/api/query", params={"sql": "SELECT count(DISTINCT i) AS n FROM range(100000000) t(i)"})
        assert big.status_code == 400 and "memory" in big.json()["error"].lower()
        assert http.get("/api/query", params={"sql": "SELECT 1 AS n"}).json()["rows"] == [[1]]
    with pytest.raises(InputError, match="--memory-limit"):
        create_app(Settings(losses_store.root, memory_limit="lots"))


def test_reports_are_generated_and_cached(client):
    from quanta_db.results.trajectories.job import ingest_trajectories

    http, store = client
    fit = ingest_trajectories(store, ["small", "large"], "toy", components=2, device="cpu").run_id
    first = http.get(f"/reports/trajectories/{fit}")
    assert first.status_code == 200 and 'id="payload"' in first.text
    assert http.get(f"/reports/trajectories/{fit}").content == first.content
    assert "unknown report" in http.get("/reports/nope/x").text
    assert "unknown trajectory fit" in http.get("/reports/trajectories/nope").text


def test_reports_render_from_the_snapshot_without_opening_the_catalog(client, monkeypatch):
    from quanta_db.results.trajectories.job import ingest_trajectories
    from quanta_db.store import catalog

    http, store = client
    fit = ingest_trajectories(store, ["small", "large"], "toy", components=2, device="cpu").run_id
    assert http.get("/").status_code == 200  # the snapshot of this commit is taken

    def no_catalog(*args, **kwargs):
        raise AssertionError("a served report opened the store's catalog")

    monkeypatch.setattr(catalog, "connect", no_catalog)
    page = http.get(f"/reports/trajectories/{fit}")
    assert page.status_code == 200 and 'id="payload"' in page.text


def test_concurrent_clients_while_an_ingest_commits(losses_store, toy_model):  # noqa: F811
    import httpx

    # each checkpoint is its own run and commit: a (model, step) must appear whole or not at all
    sql = "SELECT model || '@' || step AS checkpoint, count(*) AS n FROM token_losses GROUP BY ALL ORDER BY ALL"
    full = int(losses_store.query_df("SELECT count(*) AS n FROM token_losses WHERE model = 'small' AND step = 0")["n"][0])
    failures, seen_new, stop = [], set(), threading.Event()
    with live_server(losses_store.root, time_limit_ms=20_000) as url:
        def client():
            with httpx.Client(base_url=url, timeout=60) as http:
                while not stop.is_set():
                    response = http.get("/api/query", params={"sql": sql})
                    if response.status_code != 200:
                        failures.append(response.text)
                        continue
                    for checkpoint, n in response.json()["rows"]:
                        if checkpoint.startswith("third@"):
                            seen_new.add((checkpoint, n))

        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        ingest = subprocess.run([sys.executable, "-c", "from quanta_db.cli.main import main; main()", "--store",
                                 str(losses_store.root), "ingest", "losses", "--model",
                                 str(toy_model["dir"]), "--corpus", "toy", "--name", "third", "--steps", "0,4,8",
                                 "--no-progress"], capture_output=True, text=True, timeout=300)
        time.sleep(1.0)  # let the clients see the commit
        stop.set()
        for thread in threads:
            thread.join(60)
    assert ingest.returncode == 0, ingest.stderr
    assert failures == []
    assert {n for _, n in seen_new} == {full}  # never a partial checkpoint
    assert {c for c, _ in seen_new} == {"third@0", "third@4", "third@8"}


def test_pages_in_headless_chromium(losses_store, tmp_path):  # noqa: F811
    from quanta_db.results.trajectories.job import ingest_trajectories

    fit = ingest_trajectories(losses_store, ["small", "large"], "toy", components=2, device="cpu").run_id
    with live_server(losses_store.root, time_limit_ms=5000) as url:
        with headless_page(url + "/") as (tab, errors):
            tab.click("#analyses >> text=corpus_tokens")
            tab.fill("input[name=corpus_name]", "toy")
            tab.fill("input[name=document_id]", "1")
            tab.click("#parameters button")
            tab.wait_for_selector("#results tbody tr")
            assert "rows" in tab.inner_text("#result-meta")
            with tab.expect_download() as download:
                tab.click(".downloads >> text=csv")
            saved = tmp_path / "rows.csv"
            download.value.save_as(saved)
            assert saved.read_text().splitlines()[0].startswith('"corpus"') or "corpus" in saved.read_text().splitlines()[0]
            tab.goto(url + "/sql")
            tab.fill("textarea[name=sql]", "SELECT '<img src=x onerror=alert(1)>' AS hostile, 7 AS n")
            tab.click("#query button")
            tab.wait_for_selector("#results tbody tr")
            assert tab.inner_text("#results tbody td") == "<img src=x onerror=alert(1)>"
            assert tab.locator("#results img").count() == 0 and "sql=" in tab.url
            tab.goto(url + "/tables/token_losses")
            tab.click("#next")
            tab.wait_for_selector("#results tbody tr")
            tab.goto(url + "/")
            tab.click(f"#runs >> a[href='/reports/trajectories/{fit}']")
            tab.wait_for_selector("body[data-pair]", timeout=10_000)  # the report page rendered its data
        assert errors == []


def test_serve_command_warns_off_localhost(losses_store, monkeypatch):  # noqa: F811
    import uvicorn
    from click.testing import CliRunner

    from quanta_db.cli.main import cli

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    local = CliRunner().invoke(cli, ["--store", str(losses_store.root), "serve", "--port", "8123"])
    assert local.exit_code == 0 and "warning" not in local.output and calls[-1]["host"] == "127.0.0.1"
    everywhere = CliRunner().invoke(cli, ["--store", str(losses_store.root), "serve", "--host", "0.0.0.0"])
    assert everywhere.exit_code == 0 and "warning: serving on 0.0.0.0" in everywhere.output and "--token" in everywhere.output


def test_a_wal_vanishing_between_checks_is_just_absent(tmp_path, monkeypatch):
    """A committing ingest removes catalog.ducklake.wal at any moment: the change check must not
    fail between seeing it and reading its times (a request once got a 500 this way)."""
    from pathlib import Path

    from quanta_db.store.catalog import _stamp

    wal = tmp_path / "catalog.ducklake.wal"
    wal.write_bytes(b"x")
    monkeypatch.setattr(Path, "exists", lambda self: True)  # the old check saw it, then it went
    wal.unlink()
    assert _stamp(wal) is None
    (tmp_path / "catalog.ducklake").write_bytes(b"yy")
    assert _stamp(tmp_path / "catalog.ducklake")[-1] == 2  # the size
