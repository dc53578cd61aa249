"""Saved analyses of the universality kind against pandas, the LaTeX export and the heat-map PNG."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from quanta_db.cli.main import cli


@pytest.fixture
def universality_store(tmp_path, catalog_backend, _store_templates, toy_inputs, toy_model):
    """SAE 'a' at layer 1 paired with itself and with SAE 'c' at layer 0, matched, with CKA results
    (built once a session and copied for each test, on a local catalog); and the matchings' run
    ids by the other SAE's name."""
    from quanta_db.results.losses.job import ingest_losses
    from quanta_db.results.sae.job import ingest_sae
    from quanta_db.results.universality.job import ingest_feature_matches, ingest_feature_pairs, ingest_metrics
    from quanta_db.store.store import Store
    from tests.helpers import build_sae, fresh_store, ingest_toy_corpus

    def build(root):
        store = ingest_toy_corpus(Store.init(root), toy_inputs)
        saes = root.parent / f"{root.name}-saes"
        ingest_losses(store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], progress=False)
        ingest_sae(store, str(build_sae("standard", 32, saes / "a")), "toy", "tiny", step=8, name="a", progress=False)
        ingest_sae(store, str(build_sae("topk", 32, saes / "c", hook="blocks.0.hook_resid_post")), "toy",
                   "tiny", step=8, name="c", progress=False)
        for other, method in (("a", "one-to-one"), ("c", "argmax")):
            pairing = ingest_feature_pairs(store, "a", other, "toy", n_tokens=None, progress=False)
            matching = ingest_feature_matches(store, pairing.run_id, method, exclude_dead=True).run_id
            ingest_metrics(store, matching, ("cka",), permutations=5, seed=0)
        return store

    store = fresh_store(_store_templates, "universality", tmp_path / "store", catalog_backend, build)
    methods = {"one-to-one": "a", "argmax": "c"}
    rows = store.query_arrow("SELECT DISTINCT matching, method FROM pair_summary").to_pylist()
    return store, {methods[row["method"]]: row["matching"] for row in rows}


def test_pair_summary_equals_pandas(universality_store):
    store, _ = universality_store
    got = store.query_df("SELECT * FROM pair_summary").set_index("matching")
    matches = store.query_df("SELECT * FROM feature_matches")
    for matching, rows in matches.groupby("matching"):
        row = got.loc[matching]
        assert row.pairs_kept == len(rows) and row.unique_a_features == rows.feature_a.nunique()
        assert row.mean_corr == pytest.approx(rows["corr"].mean())
        assert row.b_features_sharing_a == (rows.n_many > 1).sum()
        assert row.a_features_many_to_1 == rows.feature_a[rows.n_many > 1].nunique()
        assert row.max_many == rows.feature_a.value_counts().max()
    assert got.loc[got.method == "argmax"].a_features_many_to_1.iloc[0] > 0  # the argmax matching shares A features


def test_significance_table_and_heatmap_data_use_the_newest_run(universality_store):
    from quanta_db.results.universality.job import ingest_metrics

    store, matchings = universality_store
    ingest_metrics(store, matchings["c"], ("cka",), permutations=7, seed=1)  # newer run of one matching
    table = store.query_df("SELECT * FROM significance_table('cka')")
    results = store.query_df("SELECT r.*, runs.ended_at FROM metric_results r JOIN runs USING (run_id) "
                             "WHERE baseline = 'random_selection'")
    newest = results.sort_values("ended_at").groupby("matching").tail(1)
    assert len(table) == 2 and sorted(table.paired) == pytest.approx(sorted(newest.value))
    assert sorted(zip(table.layer_a, table.layer_b)) == [(1, 0), (1, 1)]
    assert set(table.n_pairs) == set(newest.n_pairs)
    shuffled = store.query_df("SELECT * FROM significance_table('cka', 'shuffled_pairing')")
    assert len(shuffled) == 2 and not np.allclose(sorted(shuffled.null_mean), sorted(table.null_mean))
    cells = store.query_df("SELECT * FROM layer_heatmap('cka')")
    assert list(zip(cells.layer_a, cells.layer_b)) == [(1, 0), (1, 1)]
    self_pair = cells[cells.layer_b == 1].iloc[0]
    assert self_pair.value == pytest.approx(1.0)  # a one-to-one matching of an SAE with itself


def test_report_heatmap_and_latex_export(universality_store, tmp_path):
    import matplotlib.image

    store, _ = universality_store
    runner = CliRunner()
    png = tmp_path / "heat.png"
    result = runner.invoke(cli, ["--store", str(store.root), "report", "heatmap", "--metric", "cka", "-o", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(png).shape[0] > 100
    missing = runner.invoke(cli, ["--store", str(store.root), "report", "heatmap", "--metric", "rsa", "-o",
                                  str(tmp_path / "none.png")])
    assert missing.exit_code != 0 and "no rsa results" in missing.output and not (tmp_path / "none.png").exists()
    from starlette.testclient import TestClient

    from quanta_db.serve.app import Settings, create_app

    with TestClient(create_app(Settings(store.root)), base_url="http://localhost") as http:
        served = http.get("/reports/heatmap/cka")  # rendered in memory: a served process writes no file
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert served.content[:8] == b"\x89PNG\r\n\x1a\n"
    latex = runner.invoke(cli, ["--store", str(store.root), "export", "latex",
                                "SELECT layer_a, layer_b, paired, null_mean, p_value FROM significance_table('cka')"])
    assert latex.exit_code == 0 and "\\toprule" in latex.output and "p\\_value" in latex.output
