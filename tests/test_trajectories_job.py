"""ingest trajectories against sklearn on a pandas pivot of token_losses; dropped tokens; bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from quanta_db.errors import InputError


def _pivot(store):
    frame = store.query_df("SELECT model, step, doc_id, pos, loss_nats FROM token_losses WHERE corpus = 'toy'")
    matrix = frame.pivot_table(index=["model", "step"], columns=["doc_id", "pos"], values="loss_nats")
    return matrix.loc[[("small", 0), ("small", 4), ("small", 8), ("large", 0), ("large", 4), ("large", 8)]]


def test_pca_fit_equals_sklearn_on_the_pivoted_losses(losses_store):
    from sklearn.decomposition import PCA

    from quanta_db.results.trajectories.job import ingest_trajectories

    result = ingest_trajectories(losses_store, ["small", "large"], "toy", components=3, device="cpu")
    pivot = _pivot(losses_store).dropna(axis=1)
    reference = PCA(3, svd_solver="full").fit(pivot.to_numpy(np.float64))
    components = losses_store.query_df("SELECT * FROM trajectory_components ORDER BY component")
    np.testing.assert_allclose(components.explained_variance_ratio, reference.explained_variance_ratio_, rtol=1e-3)
    scores = losses_store.query_df("SELECT model, step, component, score FROM trajectory_scores").pivot_table(
        index=["model", "step"], columns="component", values="score").loc[pivot.index].to_numpy()
    expected = reference.transform(pivot.to_numpy(np.float64))
    np.testing.assert_allclose(np.abs(scores), np.abs(expected), rtol=1e-3, atol=1e-4)
    assert (scores[3] >= 0).all()  # the largest model's (ties: the last listed) first checkpoint scores positive
    fit = losses_store.catalog_rows("trajectory_fits")[0]
    assert fit["fit"] == result.run_id and fit["n_tokens"] == pivot.shape[1] and fit["n_dropped"] == 0
    loadings = losses_store.query_df("SELECT count(*) AS n FROM trajectory_loadings WHERE component = 1")["n"][0]
    assert loadings == pivot.shape[1]
    assert ingest_trajectories(losses_store, ["small", "large"], "toy", components=3, device="cpu").skipped
    again = ingest_trajectories(losses_store, ["small", "large"], "toy", steps=[4, 8], components=3, device="cpu")
    assert not again.skipped and losses_store.catalog_rows("trajectory_fits", fit=again.run_id)[0]["n_rows"] == 4


def test_a_checkpoint_ingested_later_makes_the_same_command_a_new_fit(corpus_store, toy_model):
    from quanta_db.results.losses.job import ingest_losses
    from quanta_db.results.trajectories.job import ingest_trajectories

    for steps, n_rows in (([0, 4], 4), ([8], 6)):  # two models x the steps ingested so far
        for name in ("a", "b"):
            ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name=name, steps=steps, progress=False)
        result = ingest_trajectories(corpus_store, ["a", "b"], "toy", components=2, device="cpu")
        assert not result.skipped
        assert corpus_store.catalog_rows("trajectory_fits", fit=result.run_id)[0]["n_rows"] == n_rows


def test_tokens_missing_from_a_row_are_dropped_and_counted(losses_store, toy_model):
    from quanta_db.results.losses.job import ingest_losses
    from quanta_db.results.trajectories.job import ingest_trajectories

    for step in (0, 4, 8):  # one checkpoint in two shards: shard 0 scores the documents with even doc_id
        ingest_losses(losses_store, str(toy_model["dir"]), "toy", name="half", steps=[step], shard=(0, 2),
                      progress=False)
    result = ingest_trajectories(losses_store, ["small", "half"], "toy", method="sparse", components=2, device="cpu")
    fit = losses_store.catalog_rows("trajectory_fits")[0]
    everything = losses_store.query_df("SELECT count(DISTINCT (doc_id, pos)) AS n FROM token_losses "
                                       "WHERE model = 'small'")["n"][0]
    in_half = losses_store.query_df("SELECT count(DISTINCT (doc_id, pos)) AS n FROM token_losses "
                                    "WHERE model = 'half'")["n"][0]
    assert fit["n_tokens"] == in_half and fit["n_dropped"] == everything - in_half > 0
    assert "dropped (missing in at least one row)" in result.message
    loadings = losses_store.query_df("SELECT * FROM trajectory_loadings")
    assert (loadings.loading != 0).all() and (loadings.doc_id % 2 == 0).all()
    components = losses_store.query_df("SELECT * FROM trajectory_components")
    assert set(components.method) == {"sparse"} and fit["cost"] > 0 and fit["alpha"] == 1.0


def test_token_subset_and_hybrid_and_events(losses_store):
    from quanta_db.results.trajectories.job import ingest_trajectories

    sql = "SELECT doc_id, pos FROM tokens WHERE corpus = 'toy' AND doc_id < 6"
    ingest_trajectories(losses_store, ["small", "large"], "toy", tokens=sql, method="hybrid", components=2,
                        sparse_components=2, smooth=(0.5, 1.0), device="cpu")
    fit = losses_store.catalog_rows("trajectory_fits")[0]
    expected = losses_store.query_df("SELECT count(DISTINCT (doc_id, pos)) AS n FROM token_losses "
                                     "WHERE model = 'small' AND doc_id < 6")["n"][0]
    assert fit["n_tokens"] == expected and fit["n_components"] == 4 and fit["smooth_late"] == 1.0
    methods = losses_store.query_df("SELECT method FROM trajectory_components ORDER BY component").method.tolist()
    assert methods == ["pca", "pca", "sparse", "sparse"]
    scores = losses_store.query_df("SELECT * FROM trajectory_scores")
    assert len(scores) == 6 * 4 and scores.score_smoothed.notna().all()
    events = losses_store.query_df("SELECT * FROM trajectory_events")
    assert events.empty  # three checkpoints per model: too short for events (see test_trajectories_fit)


@pytest.mark.parametrize("kwargs, message", [
    ({"models": ["small"]}, "models must name at least two models"),
    ({"models": ["small", "nope"]}, "unknown model 'nope'"),
    ({"models": ["small", "large", "small"]}, "lists a model twice"),
    ({"steps": [4, 5]}, "no losses on 'toy' at step(s) 5"),
    ({"tokens": "SELECT doc_id, pos FROM tokens WHERE false"}, "no token of 'toy' has losses in all 6 rows"),
    ({"tokens": "SELECT doc_id FROM tokens"}, "returning doc_id and pos"),
    ({"method": "ica"}, "method must be one of pca, sparse, hybrid"),
])
def test_bad_inputs_are_one_line_errors_and_change_nothing(losses_store, store_snapshot, kwargs, message):
    from quanta_db.results.trajectories.job import ingest_trajectories

    before = store_snapshot(losses_store)
    arguments = {"models": ["small", "large"], "corpus": "toy", "device": "cpu", **kwargs}
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ingest_trajectories(losses_store, arguments.pop("models"), arguments.pop("corpus"), **arguments)
    assert store_snapshot(losses_store) == before


def test_saved_analyses_against_pandas(losses_store, tmp_path):
    from quanta_db.results.sae.job import ingest_sae
    from quanta_db.results.trajectories.job import ingest_trajectories
    from tests.helpers import build_sae

    fit = ingest_trajectories(losses_store, ["small", "large"], "toy", components=3, device="cpu").run_id
    variance = losses_store.query_df("SELECT * FROM trajectory_explained_variance")
    np.testing.assert_allclose(variance.cumulative_ratio, np.cumsum(variance.explained_variance_ratio))
    loadings = losses_store.query_df(f"SELECT * FROM trajectory_loadings WHERE fit = '{fit}' AND component = 2")
    top = losses_store.query_df("SELECT * FROM trajectory_top_tokens(?, 2, n_tokens := 5, context_tokens := 3)", [fit])
    np.testing.assert_allclose(np.abs(top.loading), np.sort(np.abs(loadings.loading))[::-1][:5], rtol=1e-6)
    text = losses_store.query_df("SELECT t.doc_id, t.pos, v.token FROM tokens t JOIN vocab v USING (token_id) "
                                 "WHERE t.corpus = 'toy'").set_index(["doc_id", "pos"]).token
    for row in top.itertuples():
        assert row.token == text[(row.doc_id, row.pos)]
        assert row.context == "".join(text[(row.doc_id, p)] for p in range(max(0, row.pos - 3), row.pos))
    curves = losses_store.query_df("SELECT * FROM trajectory_score_curves WHERE model = 'small' AND component = 1")
    assert list(curves.steps[0]) == [0, 4, 8] and len(curves.scores_smoothed[0]) == 3
    folder = build_sae("standard", 32, tmp_path / "sae", model_name="small")
    ingest_sae(losses_store, str(folder), "toy", "small", step=8, name="s", progress=False)
    labels = losses_store.query_df("SELECT * FROM trajectory_loading_labels(?, 1)", [fit])
    examples = losses_store.query_df("SELECT corpus, doc_id, pos, feature FROM feature_examples WHERE kind = 'top'")
    on_component = losses_store.query_df(f"SELECT * FROM trajectory_loadings WHERE fit = '{fit}' AND component = 1")
    assert len(labels) == len(on_component.merge(examples, on=["corpus", "doc_id", "pos"])) > 0
