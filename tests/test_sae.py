"""ingest sae: SAEs built from sae-lens classes, saved and reloaded the way a user's are, against
statistics computed directly from transformers' hidden states with numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quanta_db.errors import InputError
from quanta_db.results.losses.job import ingest_losses
from quanta_db.results.sae.job import ingest_sae
from tests.helpers import DEAD_FEATURES, build_sae, direct_sae_outputs, headless_page, staging_entries


@pytest.fixture
def sae_store(corpus_store, toy_model):
    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], progress=False)
    return corpus_store


@pytest.mark.parametrize("architecture", ["standard", "topk", "jumprelu"])
def test_feature_statistics_match_a_direct_computation(sae_store, toy_model, tmp_path, architecture):
    sae_dir = build_sae(architecture, 32, tmp_path / architecture)
    result = ingest_sae(sae_store, str(sae_dir), "toy", "tiny", step=8, top_k=5, progress=False)
    assert not result.skipped
    x, feats, x_hat, keys, model, sae = direct_sae_outputs(sae_store, toy_model, sae_dir)
    got = sae_store.query_df(f"SELECT * FROM sae_features WHERE sae = '{architecture}' ORDER BY feature")
    active = feats != 0
    np.testing.assert_array_equal(got.n_active, active.sum(0))
    assert (got.n_tokens == len(x)).all()
    np.testing.assert_allclose(got.density, active.mean(0), rtol=1e-9)
    np.testing.assert_allclose(got.mean_act, feats.mean(0), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got.max_act, np.where(active.any(0), feats.max(0), 0), rtol=1e-4, atol=1e-6)
    assert got.dead.tolist() == (~active.any(0)).tolist() and set(DEAD_FEATURES) <= set(np.flatnonzero(got.dead))
    assert 1 < active.sum(1).mean() < 40  # sparse, not empty: the checks below mean something
    np.testing.assert_allclose(got.decoder_norm, np.linalg.norm(sae.W_dec.detach().numpy(), axis=1), rtol=1e-5)
    # top examples: a full sort of each feature's activations
    top = sae_store.query_df(f"SELECT feature, rank, doc_id, pos, activation FROM feature_examples "
                             f"WHERE sae = '{architecture}' AND kind = 'top' ORDER BY feature, rank")
    for feature, group in top.groupby("feature"):
        expected = np.sort(feats[:, feature])[::-1][: len(group)]
        np.testing.assert_allclose(group.activation, expected, rtol=1e-4)
        for row in group.itertuples():
            assert feats[keys.index((row.doc_id, row.pos)), feature] == pytest.approx(row.activation, rel=1e-4)
    assert set(top.feature) == set(np.flatnonzero(active.any(0)))
    metrics = sae_store.query_df(f"SELECT * FROM sae_metrics WHERE sae = '{architecture}'").iloc[0]
    residual = ((x - x_hat) ** 2).sum(1)
    assert metrics.mse == pytest.approx(residual.mean(), rel=1e-4)
    assert metrics.l0 == pytest.approx(active.sum(1).mean(), rel=1e-6)
    variance = (x.astype(np.float64) ** 2).sum(1).mean() - (x.astype(np.float64).mean(0) ** 2).sum()
    assert metrics.explained_variance == pytest.approx(1 - residual.mean() / variance, rel=1e-4)
    assert metrics.dead_fraction == pytest.approx(got.dead.mean()) and metrics.l0 > 1
    assert metrics.ce_loss_zero > metrics.ce_loss_clean and np.isfinite(metrics.ce_loss_score)
    # logit effects: W_dec @ W_U, top and bottom
    effects = sae.W_dec.detach().numpy() @ model.get_output_embeddings().weight.detach().numpy().T
    logits = sae_store.query_df(f"SELECT * FROM feature_logits WHERE sae = '{architecture}' AND feature = 7 "
                                "ORDER BY direction, rank")
    top_tokens = logits[logits.direction == "top"].token_id.tolist()
    assert top_tokens == np.argsort(-effects[7])[:10].tolist()
    again = ingest_sae(sae_store, str(sae_dir), "toy", "tiny", step=8, top_k=5, progress=False)
    assert again.skipped


def test_ce_loss_score_against_a_direct_splice(sae_store, toy_model, tmp_path):
    sae_dir = build_sae("standard", 32, tmp_path / "standard")
    ingest_sae(sae_store, str(sae_dir), "toy", "tiny", step=8, progress=False)
    x, feats, x_hat, keys, model, sae = direct_sae_outputs(sae_store, toy_model, sae_dir)
    from quanta_db.results.corpus.read import load_corpus_tokens

    _, sequences = load_corpus_tokens(sae_store, "toy")
    totals = {"clean": [], "sae": [], "zero": []}
    for ids in [s for s in sequences if len(s) > 1]:
        ids = torch.from_numpy(ids.astype(np.int64))[None]
        for kind in totals:
            def hook(module, args, kwargs, kind=kind):
                h = args[0] if args else kwargs["hidden_states"]
                new = {"clean": h, "sae": sae.decode(sae.encode(h)), "zero": torch.zeros_like(h)}[kind]
                return ((new, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": new})
            handle = model.gpt_neox.layers[1].register_forward_pre_hook(hook, with_kwargs=True)
            with torch.no_grad():
                logits = model(input_ids=ids).logits[0, :-1]
            handle.remove()
            totals[kind].append(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none").numpy())
    clean, spliced, zero = (np.concatenate(totals[k]).mean() for k in ("clean", "sae", "zero"))
    metrics = sae_store.query_df("SELECT * FROM sae_metrics").iloc[0]
    assert metrics.ce_loss_clean == pytest.approx(clean, rel=1e-5)
    assert metrics.ce_loss_sae == pytest.approx(spliced, rel=1e-5)
    assert metrics.ce_loss_score == pytest.approx((zero - spliced) / (zero - clean), rel=1e-4)


@pytest.mark.parametrize("case, message", [
    ("d_in", "has d_in 16 but blocks.1.hook_resid_pre"),
    ("hook", "names layer 7, but the model has 2 layers"),
    ("model", "was made for model 'pythia-70m'"),
    ("nan", "not finite"),
])
def test_bad_saes_are_one_line_errors_and_change_nothing(sae_store, tmp_path, store_snapshot, case, message):
    folder = tmp_path / case
    kwargs = {"d_in": dict(d_in=16), "hook": dict(hook="blocks.7.hook_resid_post"),
              "model": dict(model_name="pythia-70m"), "nan": dict(nan=True)}[case]
    build_sae("standard", kwargs.pop("d_in", 32), folder, **kwargs)
    before = store_snapshot(sae_store)
    with pytest.raises(InputError, match=message):
        ingest_sae(sae_store, str(folder), "toy", "tiny", step=8, progress=False)
    assert store_snapshot(sae_store) == before and staging_entries(sae_store) == []


class _FixedTokens:
    """The part of sae-lens's ActivationsStore that run_evals uses: the same token batch each time."""

    def __init__(self, tokens: torch.Tensor):
        self.tokens = tokens
        self.store_batch_size_prompts, self.context_size = tokens.shape

    def get_batch_tokens(self, batch_size=None):
        return self.tokens

    def reset_input_dataset(self):
        pass


@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_metrics_agree_with_sae_lens_run_evals(sae_store, toy_model, tmp_path, architecture):
    """sae-lens's own evals, on a HookedTransformer with the same weights and the same tokens."""
    from sae_lens import SAE
    from sae_lens.evals import get_eval_everything_config, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler
    from transformers import AutoModelForCausalLM

    from quanta_db.results.corpus.read import load_corpus_tokens
    from quanta_db.runtime.lens_reference import hooked_transformer

    _, sequences = load_corpus_tokens(sae_store, "toy")
    windows = [s[:32] for s in sequences if len(s) >= 32]
    assert len(windows) == len([s for s in sequences if len(s)])  # every document is a full window
    from quanta_db.results.corpus.job import ingest_corpus

    sae_dir = build_sae(architecture, 32, tmp_path / architecture)
    tokenizer = sae_store.catalog_rows("tokenizers")[0]["source"]
    source = sae_store.catalog_rows("corpora", corpus="toy")[0]["source"]
    ingest_corpus(sae_store, source, "windows", tokenizer, max_tokens=32, progress=False)
    ingest_sae(sae_store, str(sae_dir), "windows", "tiny", step=8, progress=False)
    ours = sae_store.query_df(f"SELECT * FROM sae_metrics WHERE sae = '{architecture}'").iloc[0]

    model = hooked_transformer(AutoModelForCausalLM.from_pretrained(str(toy_model["dir"] / "step8")))
    sae = SAE.load_from_disk(str(sae_dir), device="cpu")
    tokens = torch.from_numpy(np.stack(windows).astype(np.int64))
    config = get_eval_everything_config(batch_size_prompts=len(tokens), n_eval_reconstruction_batches=1,
                                        n_eval_sparsity_variance_batches=1)
    theirs, _ = run_evals(sae, _FixedTokens(tokens), model, ActivationScaler(), config, exclude_special_tokens=False)
    flat = {k: v for group in theirs.values() for k, v in group.items()}
    for ours_name, their_name in [("l0", "l0"), ("l1", "l1"), ("mse", "mse"), ("cos_sim", "cossim"),
                                  ("explained_variance", "explained_variance"), ("l2_ratio", "l2_ratio"),
                                  ("ce_loss_score", "ce_loss_score"), ("ce_loss_clean", "ce_loss_without_sae"),
                                  ("ce_loss_sae", "ce_loss_with_sae"), ("ce_loss_zero", "ce_loss_with_ablation")]:
        assert ours[ours_name] == pytest.approx(flat[their_name], rel=1e-4, abs=1e-6), ours_name


@pytest.fixture
def hostile_sae_store(store, toy_inputs, tmp_path):
    """Whole-tag vocabulary entries, so tokens are markup themselves, and a hostile SAE name."""
    from transformers import AutoTokenizer

    from quanta_db.demo.toy_corpus import write_jsonl
    from quanta_db.demo.toy_models import gpt_neox_config, random_model
    from quanta_db.results.corpus.job import ingest_corpus

    tokenizer = AutoTokenizer.from_pretrained(str(toy_inputs["tokenizer"]))
    tokenizer.add_tokens(["<b>bold</b>", "<img src=x onerror=alert(1)>"])
    model_dir = tmp_path / "step0"
    tokenizer.save_pretrained(model_dir)
    random_model(gpt_neox_config(len(tokenizer), 32, 2, 4, n_ctx=256)).save_pretrained(model_dir)
    text = "<b>bold</b> then <img src=x onerror=alert(1)> and <script>alert(2)</script> "
    records = [{"text": text * 4 + r["text"][:200], "meta": {"pile_set_name": "x"}} for r in toy_inputs["records"][:10]]
    ingest_corpus(store, write_jsonl(records, tmp_path / "h.jsonl"), "hostile", str(model_dir), max_tokens=96,
                  progress=False)
    sae_dir = build_sae("standard", 32, tmp_path / "sae", model_name="step0")
    ingest_sae(store, str(sae_dir), "hostile", str(model_dir), name="<i>sae</i>", progress=False)
    return store, "<i>sae</i>"


def test_feature_report_in_headless_chromium(hostile_sae_store, tmp_path):
    from quanta_db.results.sae.report import render_features_html

    store, name = hostile_sae_store
    page = render_features_html(store, name, max_features=20)
    assert page == render_features_html(store, name, max_features=20)
    assert "<b>bold" not in page and "<img" not in page and "<i>sae" not in page and "&lt;i&gt;sae" in page
    path = tmp_path / "features.html"
    path.write_text(page, encoding="utf-8")
    with headless_page(path.as_uri()) as (tab, errors):
        tab.wait_for_selector("body[data-feature]", timeout=10_000)
        densities = store.query_df(f"SELECT feature, density FROM sae_features WHERE sae = '{name}'")
        densest = int(densities.sort_values(["density", "feature"], ascending=[False, True]).feature.iloc[0])
        assert tab.get_attribute("body", "data-feature") == str(densest)
        tab.keyboard.press("ArrowDown")
        second = tab.get_attribute("body", "data-feature")
        assert second != str(densest)
        tab.keyboard.press("ArrowUp")
        assert tab.get_attribute("body", "data-feature") == str(densest)
        tab.select_option("#sort", "feature")
        tab.wait_for_selector("body[data-sort='feature'][data-feature='0']", timeout=10_000)
        tab.select_option("#sort", "density")
        tab.wait_for_selector(f"body[data-sort='density'][data-feature='{densest}']", timeout=10_000)
        text = tab.inner_text("#examples")
        assert tab.locator("#examples .example").count() > 0 and tab.locator("#histogram rect").count() > 0
        assert tab.locator("#examples .hit").count() == tab.locator("#examples .example").count()
        assert "<b>bold</b>" in text or "<img src=x onerror=alert(1)>" in text or "<script>" in text
        assert tab.locator("b, img, i, #detail script").count() == 0  # tokens and names never become markup
        assert f"Features of SAE {name} on hostile" in tab.inner_text("h1")
    assert errors == []


def test_bfloat16_statistics_are_close_to_float32(sae_store, tmp_path):
    sae_dir = build_sae("standard", 32, tmp_path / "standard")
    ingest_sae(sae_store, str(sae_dir), "toy", "tiny", step=8, name="f32", progress=False)
    ingest_sae(sae_store, str(sae_dir), "toy", "tiny", step=8, name="bf16", dtype="bfloat16", progress=False)
    both = sae_store.query_df("SELECT sae, l0, explained_variance, ce_loss_score FROM sae_metrics ORDER BY sae")
    f32, bf16 = both.set_index("sae").loc["f32"], both.set_index("sae").loc["bf16"]
    assert bf16.l0 == pytest.approx(f32.l0, rel=0.05)
    assert bf16.explained_variance == pytest.approx(f32.explained_variance, rel=0.01)
    hashes = sae_store.query_df("SELECT DISTINCT config_hash FROM saes")
    assert len(hashes) == 1  # the identity of the SAE does not depend on the dtype it ran in


def test_first_tokens_cuts_the_last_document_and_allows_more_than_the_corpus():
    from quanta_db.results.sae.job import first_tokens

    docs = np.array([10, 11, 12])
    sequences = [np.arange(5), np.arange(4), np.arange(3)]
    ids, kept = first_tokens(docs, sequences, 7)
    assert ids.tolist() == [10, 11] and [len(s) for s in kept] == [5, 2]
    ids, kept = first_tokens(docs, sequences, 9)
    assert ids.tolist() == [10, 11] and [len(s) for s in kept] == [5, 4]
    ids, kept = first_tokens(docs, sequences, 1000)  # more than the corpus holds: all of it
    assert ids.tolist() == [10, 11, 12] and [len(s) for s in kept] == [5, 4, 3]
