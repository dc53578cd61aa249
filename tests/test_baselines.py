"""ingest baselines: PCA / ICA / NMF dictionaries against scikit-learn and scipy on the same
matrices, registered as SAEs and scored by `ingest sae` like any other."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.optimize
import torch
from click.testing import CliRunner
from sklearn.decomposition import NMF, PCA, FastICA

from quanta_db.errors import InputError
from quanta_db.results.baselines import dictionary
from quanta_db.results.baselines.fit import fit_ica, fit_nmf, fit_pca
from quanta_db.results.baselines.job import ingest_baselines
from quanta_db.results.losses.job import ingest_losses
from quanta_db.results.sae.job import ingest_sae
from quanta_db.results.sae.loading import load_sae
from tests.helpers import SAE_HOOK, build_sae, direct_sae_outputs

N_FIT = 1500


def anisotropic(n=600, d=12, seed=0, offset=3.0):
    """Rows with a clearly separated spectrum (so components are unique up to sign) and a mean."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(4.0, 0.2, d)
    rotation = np.linalg.qr(rng.normal(size=(d, d)))[0]
    return ((rng.normal(size=(n, d)) * scales) @ rotation + offset).astype(np.float32)


def match_up_to_sign(ours: np.ndarray, theirs: np.ndarray, atol: float) -> None:
    """Rows equal up to a sign each, in the same order (scikit-learn orders by variance too)."""
    signs = np.sign((ours * theirs).sum(1))
    np.testing.assert_allclose(ours * signs[:, None], theirs, atol=atol)


def saved_and_loaded(method, fit, tmp_path, threshold=0.1):
    sae = dictionary.build(method, fit.w_enc, fit.w_dec, fit.b_dec, SAE_HOOK, "tiny", threshold, {})
    sae.save_model(tmp_path / method)
    return load_sae(str(tmp_path / method), None, "cpu").sae  # sae-lens's own loading path


def test_pca_on_the_device_equals_scikit_learn(tmp_path):
    x = anisotropic()
    ours = fit_pca(torch.from_numpy(x), 5)
    reference = PCA(n_components=5, svd_solver="full").fit(x.astype(np.float64))
    match_up_to_sign(ours.w_dec, reference.components_, atol=1e-5)
    np.testing.assert_allclose(ours.explained_variance, reference.explained_variance_, rtol=1e-6)
    total = reference.explained_variance_.sum() / reference.explained_variance_ratio_.sum()
    assert ours.total_variance == pytest.approx(total, rel=1e-6)
    np.testing.assert_allclose(ours.b_dec, reference.mean_, rtol=1e-6)
    sae = saved_and_loaded("pca", ours, tmp_path)
    assert sae.cfg.architecture() == "pca"
    with torch.no_grad():
        codes = sae.encode(torch.from_numpy(x)).numpy()
        back = sae.decode(torch.from_numpy(codes)).numpy()
    match_up_to_sign(codes.T, reference.transform(x).T, atol=1e-4)
    np.testing.assert_allclose(back, reference.inverse_transform(reference.transform(x)), atol=1e-4)


def test_ica_encodes_and_decodes_as_scikit_learn(tmp_path):
    x = anisotropic(seed=1)
    ours = fit_ica(torch.from_numpy(x), 6, seed=3)
    reference = FastICA(n_components=6, whiten="unit-variance", random_state=3, max_iter=400).fit(x.astype(np.float64))
    np.testing.assert_allclose(ours.w_enc.T, reference.components_, rtol=1e-4, atol=1e-5)
    sae = saved_and_loaded("ica", ours, tmp_path)
    with torch.no_grad():
        codes = sae.encode(torch.from_numpy(x)).numpy()
        back = sae.decode(torch.from_numpy(codes)).numpy()
    np.testing.assert_allclose(codes, reference.transform(x), atol=1e-4)
    np.testing.assert_allclose(back, reference.inverse_transform(reference.transform(x)), atol=1e-4)
    # K < d: the reconstruction is the projection on the top-K principal subspace, as PCA's
    pca = PCA(n_components=6).fit(x)
    np.testing.assert_allclose(back, pca.inverse_transform(pca.transform(x)), atol=1e-3)


def test_nmf_codes_are_the_exact_non_negative_least_squares_solution(tmp_path):
    x = anisotropic(n=300, d=10, seed=2)
    ours = fit_nmf(torch.from_numpy(x), 4, seed=0, hook_name=SAE_HOOK)
    shift = x.min(0)
    np.testing.assert_allclose(ours.b_dec, shift)
    reference = NMF(n_components=4, init="nndsvda", random_state=0, max_iter=1000).fit(x.astype(np.float64) - shift)
    np.testing.assert_allclose(ours.w_dec, reference.components_, rtol=1e-4, atol=1e-6)
    sae = saved_and_loaded("nmf", ours, tmp_path)
    fresh = anisotropic(n=50, d=10, seed=9)  # tokens the fit never saw, some below the shift
    with torch.no_grad():
        codes = sae.encode(torch.from_numpy(fresh)).numpy()
        back = sae.decode(torch.from_numpy(codes)).numpy()
    target = np.maximum(fresh.astype(np.float64) - shift, 0)
    exact = np.stack([scipy.optimize.nnls(ours.w_dec.T.astype(np.float64), row)[0] for row in target])
    np.testing.assert_allclose(codes, exact, atol=1e-4 * exact.max())
    assert (codes >= 0).all()
    np.testing.assert_allclose(back, exact @ ours.w_dec + shift, atol=1e-3)
    loose = reference.transform(target)  # scikit-learn's coordinate descent stops at its tolerance
    np.testing.assert_allclose(codes, loose, atol=5e-2 * loose.max())


def test_l0_of_dense_codes_counts_codes_above_a_fraction_of_the_largest():
    codes = torch.tensor([[3.0, -0.2, 0.31, -1.0], [0.0, 0.0, 0.0, 0.0], [-0.5, 0.05, 0.049, 0.0]])
    active = dictionary.relative_active(codes, 0.1)
    expected = torch.tensor([[3.0, 0.0, 0.31, 1.0], [0.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0]])
    torch.testing.assert_close(active, expected)


@pytest.fixture
def baseline_store(corpus_store, toy_model):
    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], progress=False)
    return corpus_store


def test_a_pca_baseline_is_an_sae_with_pca_metrics(baseline_store, toy_model, tmp_path):
    result = ingest_baselines(baseline_store, "tiny", SAE_HOOK, "toy", "pca", step=8, n_components=8,
                              n_tokens=N_FIT, progress=False)
    name = result.details["sae"]
    row = baseline_store.catalog_rows("saes", sae=name)[0]
    assert row["architecture"] == "pca" and row["d_sae"] == 8 and row["hook_name"] == SAE_HOOK
    assert row["source"].startswith("dictionaries/")  # relative to the store, which can move
    assert json.loads(row["config"])["metadata"]["quanta_db_fit"]["fit_tokens"] == N_FIT
    x = direct_sae_outputs(baseline_store, toy_model, build_sae("standard", 32, tmp_path / "any"))[0]
    reference = PCA(n_components=8, svd_solver="full").fit(x[:N_FIT].astype(np.float64))
    codes = reference.transform(x)
    residual = ((x - reference.inverse_transform(codes)) ** 2).sum(1)
    variance = (x.astype(np.float64) ** 2).sum(1).mean() - (x.astype(np.float64).mean(0) ** 2).sum()
    metrics = baseline_store.query_df(f"SELECT * FROM sae_metrics WHERE sae = '{name}'").iloc[0]
    assert metrics.n_tokens == len(x)
    assert metrics.explained_variance == pytest.approx(1 - residual.mean() / variance, rel=1e-3)
    magnitude = np.abs(codes)
    l0 = (magnitude > 0.1 * magnitude.max(1, keepdims=True)).sum(1).mean()
    assert metrics.l0 == pytest.approx(l0, rel=1e-3) and 1 < metrics.l0 < 8
    assert metrics.dec_cos_p95 == pytest.approx(0, abs=2e-4)  # orthonormal components
    assert np.isfinite(metrics.ce_loss_score)
    again = ingest_baselines(baseline_store, "tiny", SAE_HOOK, "toy", "pca", step=8, n_components=8,
                             n_tokens=N_FIT, progress=False)
    assert again.skipped and "already fitted" in again.message
    with pytest.raises(InputError, match="already used for another SAE or dictionary; pass --name or --force"):
        ingest_baselines(baseline_store, "tiny", SAE_HOOK, "toy", "pca", step=8, n_components=8, n_tokens=N_FIT // 2,
                         name=name, progress=False)


def test_baselines_and_saes_side_by_side_and_through_the_sae_machinery(baseline_store, tmp_path):
    from quanta_db.reports.latex import LatexOptions, to_latex
    from quanta_db.results.sae.report import render_features_html
    from quanta_db.results.universality.job import ingest_feature_matches, ingest_feature_pairs, ingest_metrics

    sae_dir = build_sae("standard", 32, tmp_path / "standard")
    ingest_sae(baseline_store, str(sae_dir), "toy", "tiny", step=8, progress=False)
    names = {}
    for method in ("pca", "ica", "nmf"):
        names[method] = ingest_baselines(baseline_store, "tiny", SAE_HOOK, "toy", method, step=8, n_components=6,
                                         n_tokens=N_FIT, progress=False).details["sae"]
    table = baseline_store.query_df(f"SELECT * FROM sae_vs_baselines('tiny', '{SAE_HOOK}', 'toy')")
    assert table.architecture.tolist() == ["standard", "ica", "nmf", "pca"]
    assert table.kind.tolist() == ["sae", "baseline", "baseline", "baseline"]
    ev = dict(zip(table.architecture, table.explained_variance))
    assert ev["ica"] == pytest.approx(ev["pca"], abs=1e-3)  # the same K-dimensional subspace
    assert ev["nmf"] <= ev["pca"] + 1e-6  # no rank-6 reconstruction beats PCA's
    assert table.dead_fraction.between(0, 1).all() and (table.l0 > 0).all()
    latex = to_latex(table, LatexOptions(maximize=("explained_variance",)))
    assert "\\begin{tabular}" in latex and "nmf" in latex
    page = render_features_html(baseline_store, names["nmf"], "toy")
    assert names["nmf"] in page
    pairs = ingest_feature_pairs(baseline_store, names["pca"], "standard", "toy", progress=False)
    assert pairs.rows_written > 0
    matching = ingest_feature_matches(baseline_store, pairs.run_id, "one-to-one")
    metrics = ingest_metrics(baseline_store, matching.run_id, ("svcca",), permutations=5, seed=0)
    assert matching.rows_written > 0 and metrics.rows_written > 0


def test_cli_fits_a_baseline(baseline_store):
    from quanta_db.cli.main import cli

    result = CliRunner().invoke(cli, ["--store", str(baseline_store.root), "ingest", "baselines", "--model", "tiny",
                                      "--step", "8", "--hook", SAE_HOOK, "--corpus", "toy", "--method", "ica",
                                      "--n-components", "4", "--n-tokens", "500", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "ICA baseline fitted" in result.output
    assert baseline_store.catalog_rows("saes", sae=f"tiny@8-{SAE_HOOK}-ica4")[0]["architecture"] == "ica"


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="pca", n_components=33), "larger than the width 32"),
    (dict(method="pca", hook="blocks.5.hook_resid_post"), "names layer 5, but the model has 2 layers"),
    (dict(method="ica", hook="blocks.0.attn.hook_result"), "not supported"),
    (dict(method="pca", n_components=16, n_tokens=10), "too few to fit 16 pca components"),
])
def test_bad_inputs_are_one_line_and_store_nothing(baseline_store, store_snapshot, kwargs, message):
    before = store_snapshot(baseline_store)
    arguments = dict(hook=SAE_HOOK, step=8, progress=False) | kwargs
    with pytest.raises(InputError, match=message) as error:
        ingest_baselines(baseline_store, "tiny", corpus="toy", **arguments)
    assert "\n" not in str(error.value)
    assert store_snapshot(baseline_store) == before
    assert not dictionary_folders(baseline_store)


def dictionary_folders(store) -> list:
    folder = store.root / "dictionaries"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_a_failure_after_the_fit_removes_the_dictionary_it_saved(baseline_store, store_snapshot, monkeypatch):
    import quanta_db.results.baselines.job as job

    def killed(*args, **kwargs):
        assert len(dictionary_folders(baseline_store)) == 1  # saved, not yet registered
        raise KeyboardInterrupt

    monkeypatch.setattr(job, "ingest_sae", killed)
    before = store_snapshot(baseline_store)
    with pytest.raises(KeyboardInterrupt):
        ingest_baselines(baseline_store, "tiny", SAE_HOOK, "toy", "pca", step=8, n_components=4, n_tokens=500,
                         progress=False)
    assert store_snapshot(baseline_store) == before and not dictionary_folders(baseline_store)


def test_nmf_refuses_a_hook_whose_shift_is_undefined(baseline_store, toy_model, tmp_path, store_snapshot):
    """A model whose first attention writes nothing: hook_attn_out is the same at every token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(toy_model["dir"] / "step8"))
    with torch.no_grad():
        model.gpt_neox.layers[0].attention.dense.weight.zero_()
        model.gpt_neox.layers[0].attention.dense.bias.fill_(0.5)
    folder = tmp_path / "silent"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(toy_model["dir"] / "step8")).save_pretrained(folder)
    before = store_snapshot(baseline_store)
    with pytest.raises(InputError, match="shift to non-negative values leaves nothing to factor"):
        ingest_baselines(baseline_store, str(folder), "blocks.0.hook_attn_out", "toy", "nmf", n_components=4,
                         n_tokens=500, progress=False)
    assert store_snapshot(baseline_store) == before


def test_saving_a_dictionary_twice_keeps_one_folder(tmp_path):
    from quanta_db.results.baselines.job import save_dictionary

    fit = fit_pca(torch.from_numpy(anisotropic()), 3)
    sae = dictionary.build("pca", fit.w_enc, fit.w_dec, fit.b_dec, SAE_HOOK, "tiny", 0.1, {})
    first, created = save_dictionary(tmp_path, "x/y", sae)
    again, created_again = save_dictionary(tmp_path, "x/y", sae)
    assert created and not created_again and first == again and first.parent.name == "dictionaries"
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary folder left
