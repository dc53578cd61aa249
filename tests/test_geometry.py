"""ingest geometry: streaming float64 moments against numpy / scipy on the whole activation matrix."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from quanta_db.errors import InputError
from quanta_db.results.geometry.job import ingest_geometry
from quanta_db.results.geometry.moments import ActivationMoments
from quanta_db.results.losses.job import ingest_losses

HOOKS = ("blocks.0.hook_resid_post", "blocks.1.hook_mlp_out")


def reference_statistics(x: np.ndarray) -> dict:
    """Everything from the full matrix at once, in float64."""
    x = x.astype(np.float64)
    eigenvalues = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True)))[::-1]
    eigenvalues = np.maximum(eigenvalues, 0)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    cosines = unit @ unit.T
    n = len(x)
    mean_square = (x**2).mean(0)
    return {
        "mean": x.mean(0), "std": x.std(0), "mean_square": mean_square, "kurtosis": scipy.stats.kurtosis(x, axis=0),
        "max_abs": np.abs(x).max(0), "energy_fraction": mean_square / mean_square.sum(), "spectrum": eigenvalues,
        "participation_ratio": eigenvalues.sum() ** 2 / (eigenvalues**2).sum(),
        "variance_top1": eigenvalues[0] / eigenvalues.sum(), "variance_top10": eigenvalues[:10].sum() / eigenvalues.sum(),
        "mean_pair_cosine": (cosines.sum() - np.trace(cosines)) / (n * (n - 1)),
    }


@pytest.mark.parametrize("batches", [[1000], [1, 999], [137, 400, 463], [10] * 100])
def test_streaming_moments_equal_numpy_on_the_whole_matrix(batches):
    rng = np.random.default_rng(0)
    x = rng.standard_t(df=5, size=(1000, 8)) * np.geomspace(3, 0.1, 8)
    x[:, 2] += 1e4  # an outlier dimension: raw power sums would lose its kurtosis entirely
    x[:, 5] = rng.exponential(size=1000) ** 2  # heavy right tail
    x[::7] = 0.0  # zero vectors: no direction, left out of the cosines
    moments = ActivationMoments(8, "cpu")
    start = 0
    for size in batches:
        moments.add(torch.from_numpy(x[start:start + size]))
        start += size
    expected = reference_statistics(x)
    got = moments.dimensions()
    for name in ("mean", "std", "mean_square", "kurtosis", "max_abs", "energy_fraction"):
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-9, atol=1e-12, err_msg=name)
    spectrum = moments.spectrum()
    np.testing.assert_allclose(spectrum, expected["spectrum"], rtol=1e-9, atol=1e-9 * expected["spectrum"][0])
    summary = moments.summary(spectrum)
    for name in ("participation_ratio", "variance_top1", "variance_top10", "mean_pair_cosine"):
        assert summary[name] == pytest.approx(expected[name], rel=1e-9), name
    assert summary["n_tokens"] == 1000 and summary["variance_top100"] == pytest.approx(1.0)


def test_a_constant_dimension_has_no_kurtosis_and_a_constant_matrix_no_spectrum():
    x = np.tile(np.array([[0.3, -2.0, 0.0]]), (50, 1))
    x[:, 0] += np.linspace(0, 1, 50)
    moments = ActivationMoments(3, "cpu")
    for part in np.array_split(x, 7):
        moments.add(torch.from_numpy(part))
    kurtosis = moments.dimensions()["kurtosis"]
    assert np.isfinite(kurtosis[0]) and np.isnan(kurtosis[1:]).all()
    flat = ActivationMoments(3, "cpu")
    flat.add(torch.zeros(20, 3, dtype=torch.float64))
    summary = flat.summary(flat.spectrum())
    assert summary["participation_ratio"] is None and summary["variance_top1"] is None
    assert summary["mean_pair_cosine"] == 0.0


@pytest.fixture
def geometry_store(corpus_store, toy_model):
    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[4, 8], progress=False)
    return corpus_store


def hidden_states(store, toy_model, step, n_tokens):
    """Per hook the activations of the first n_tokens corpus tokens from transformers directly, and
    their (doc_id, pos)."""
    from transformers import AutoModelForCausalLM

    from quanta_db.results.corpus.read import load_corpus_tokens

    model = AutoModelForCausalLM.from_pretrained(str(toy_model["dir"] / f"step{step}"), dtype=torch.float32).eval()
    captured = []
    handle = model.gpt_neox.layers[1].mlp.register_forward_hook(lambda m, a, out: captured.append(out[0]))
    resid, mlp, keys = [], [], []
    for doc, ids in zip(*load_corpus_tokens(store, "toy")):
        if len(ids) == 0 or len(keys) >= n_tokens:
            continue
        with torch.no_grad():
            out = model(input_ids=torch.from_numpy(ids.astype(np.int64))[None], output_hidden_states=True)
        resid.append(out.hidden_states[1][0])
        mlp.append(captured.pop())
        keys += [(int(doc), p) for p in range(len(ids))]
    handle.remove()
    x = {HOOKS[0]: torch.cat(resid).numpy()[:n_tokens], HOOKS[1]: torch.cat(mlp).numpy()[:n_tokens]}
    return x, keys[:n_tokens]


def test_geometry_of_two_checkpoints_equals_numpy_on_transformers_hidden_states(geometry_store, toy_model):
    n_tokens = 2500
    results = ingest_geometry(geometry_store, "tiny", HOOKS, "toy", n_tokens=n_tokens, top_k=3, progress=False)
    assert [r.skipped for r in results] == [False, False]
    for step in (4, 8):
        x, keys = hidden_states(geometry_store, toy_model, step, n_tokens)
        for hook in HOOKS:
            expected = reference_statistics(x[hook])
            where = f"model = 'tiny' AND step = {step} AND hook = '{hook}'"
            dims = geometry_store.query_df(f"SELECT * FROM activation_dimensions WHERE {where} ORDER BY dim")
            for name in ("mean", "std", "mean_square", "kurtosis", "max_abs", "energy_fraction"):
                np.testing.assert_allclose(dims[name], expected[name], rtol=2e-4, atol=1e-6, err_msg=name)
            summary = geometry_store.query_df(f"SELECT * FROM activation_summary WHERE {where}").iloc[0]
            assert summary.n_tokens == n_tokens and summary.d == 32
            for name in ("participation_ratio", "variance_top1", "variance_top10", "mean_pair_cosine"):
                assert summary[name] == pytest.approx(expected[name], rel=1e-3), name
            spectrum = geometry_store.query_df(f"SELECT * FROM activation_spectrum WHERE {where} ORDER BY rank")
            np.testing.assert_allclose(spectrum.eigenvalue, expected["spectrum"], rtol=1e-3,
                                       atol=1e-6 * expected["spectrum"][0])
            assert spectrum.cumulative_fraction.iloc[-1] == pytest.approx(1.0)
            top = geometry_store.query_df(f"SELECT * FROM activation_top_tokens WHERE {where} ORDER BY dim, rank")
            for dim, group in top.groupby("dim"):
                order = np.argsort(-np.abs(x[hook][:, dim]), kind="stable")[:3]
                np.testing.assert_allclose(group.activation, x[hook][order, dim], rtol=1e-4, atol=1e-6)
                assert [keys[i] for i in order] == list(zip(group.doc_id, group.pos))
    again = ingest_geometry(geometry_store, "tiny", HOOKS, "toy", n_tokens=n_tokens, top_k=3, progress=False)
    assert all(r.skipped for r in again)
    by_layer = geometry_store.query_df("SELECT * FROM anisotropy_by_layer('tiny', 8)")
    assert by_layer.hook.tolist() == list(HOOKS) and by_layer.layer.tolist() == [0, 1]
    training = geometry_store.query_df(f"SELECT * FROM anisotropy_over_training('tiny', '{HOOKS[0]}')")
    assert training.step.tolist() == [4, 8]
    outliers = geometry_store.query_df(f"SELECT * FROM outlier_dimensions('tiny', 8, '{HOOKS[0]}', n := 4)")
    energy = reference_statistics(x[HOOKS[0]])["energy_fraction"]  # x: step 8's, the loop's last
    assert outliers.dim.tolist() == np.argsort(-energy, kind="stable")[:4].tolist()
    assert outliers.top_tokens.str.count(r" \| ").tolist() == [2] * 4


def test_other_parameters_need_force_and_force_replaces(geometry_store):
    ingest_geometry(geometry_store, "tiny", HOOKS[:1], "toy", steps=(8,), n_tokens=500, progress=False)
    with pytest.raises(InputError, match="other parameters; pass --force"):
        ingest_geometry(geometry_store, "tiny", HOOKS[:1], "toy", steps=(8,), n_tokens=900, progress=False)
    ingest_geometry(geometry_store, "tiny", HOOKS[:1], "toy", steps=(8,), n_tokens=900, force=True, progress=False)
    rows = geometry_store.query_df("SELECT n_tokens FROM activation_summary")
    assert rows.n_tokens.tolist() == [900]
    assert geometry_store.query_df("SELECT count(*) AS n FROM activation_dimensions").n[0] == 32


def test_a_hook_the_model_lacks_is_one_line_and_stores_nothing(geometry_store, store_snapshot):
    before = store_snapshot(geometry_store)
    with pytest.raises(InputError, match="names layer 7, but the model has 2 layers") as error:
        ingest_geometry(geometry_store, "tiny", ("blocks.7.hook_resid_post",), "toy", steps=(8,), progress=False)
    assert "\n" not in str(error.value)
    assert store_snapshot(geometry_store) == before


def test_cli_runs_geometry(geometry_store):
    from click.testing import CliRunner

    from quanta_db.cli.main import cli

    result = CliRunner().invoke(cli, ["--store", str(geometry_store.root), "ingest", "geometry", "--model", "tiny",
                                      "--steps", "8", "--hooks", ",".join(HOOKS), "--corpus", "toy", "--n-tokens",
                                      "300", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "geometry of tiny@8" in result.output
