"""Attention-head metrics against TransformerLens on a model converted from the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quanta_db.runtime.lens_reference import hooked_transformer


@pytest.fixture(scope="module")
def tiny():
    from quanta_db.demo.toy_models import gpt_neox_config, random_model

    model = random_model(gpt_neox_config(97, 32, 2, 4, n_ctx=64), seed=3)
    with torch.no_grad():  # non-trivial LayerNorm and bias parameters, so every folding matters
        generator = torch.Generator().manual_seed(0)
        for name, parameter in model.named_parameters():
            if "layernorm" in name or "layer_norm" in name or name.endswith("bias"):
                parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
    rng = np.random.default_rng(0)
    half = rng.integers(0, 97, size=(3, 12))
    ids = torch.from_numpy(np.concatenate([half, half, rng.integers(0, 97, size=(3, 6))], axis=1))  # repeats: copies
    return model.eval(), ids


def test_dla_and_mover_scores_equal_transformer_lens(tiny):
    from quanta_db.results.heads.token_metrics import head_token_metrics

    model, ids = tiny
    got = head_token_metrics(model, ids)
    reference = hooked_transformer(model, processed=True)
    _, cache = reference.run_with_cache(ids)
    n_layers, n_heads = reference.cfg.n_layers, reference.cfg.n_heads
    stack = cache.stack_head_results(layer=-1, apply_ln=True)  # [L*H, B, T, d_model]
    targets = ids[:, 1:]
    w_u = reference.W_U[:, targets]  # [d_model, B, T-1]
    dla = torch.einsum("cbtd,dbt->btc", stack[:, :, :-1], w_u).reshape(*targets.shape, n_layers, n_heads)
    torch.testing.assert_close(got["dla"], dla, atol=1e-4, rtol=1e-4)
    copies = (ids[:, None, :-1] == targets[:, :, None]) & torch.ones(ids.shape[1] - 1, ids.shape[1] - 1).tril().bool()
    scale = cache["ln_final.hook_scale"][:, :-1, 0]
    for layer in range(n_layers):
        pattern = cache["pattern", layer][:, :, :-1, :-1]  # [B, H, q, s]
        mover_attn = (pattern * copies[:, None]).sum(-1).transpose(1, 2)
        torch.testing.assert_close(got["mover_attn"][:, :, layer], mover_attn, atol=1e-5, rtol=1e-4)
        v = cache["v", layer][:, :-1]  # [B, s, H, d_head]
        per_source = torch.einsum("bshe,hed->bhsd", v, reference.W_O[layer])  # each source's write
        per_source = per_source - per_source.mean(-1, keepdim=True)
        writes = torch.einsum("bhqs,bhsd->bhqd", pattern * copies[:, None], per_source) / scale[:, None, :, None]
        mover_dla = torch.einsum("bhqd,dbq->bqh", writes, w_u)
        torch.testing.assert_close(got["mover_dla"][:, :, layer], mover_dla, atol=1e-4, rtol=1e-4)
    assert (got["mover_attn"] > 0).any() and (got["mover_dla"].abs() > 0).any()


def test_pattern_scores_equal_transformer_lens_detectors(tiny):
    from transformer_lens.head_detector import (
        compute_head_attention_similarity_score,
        get_duplicate_token_head_detection_pattern,
        get_previous_token_head_detection_pattern,
    )

    from quanta_db.results.heads.head_scores import pattern_scores, repeated_tokens

    model, _ = tiny
    length = 10
    ids = repeated_tokens(3, length, (5, 90), bos=0, seed=1)
    assert ids.shape == (3, 21) and (ids[:, 1:11] == ids[:, 11:]).all() and (ids[:, 0] == 0).all()
    got = pattern_scores(model, ids, length)
    reference = hooked_transformer(model, processed=True)
    _, cache = reference.run_with_cache(ids)
    for layer in range(reference.cfg.n_layers):
        pattern = cache["pattern", layer]  # [B, H, q, k]
        for head in range(reference.cfg.n_heads):
            diagonal = [pattern[b, head, q, q - length + 1] for b in range(3) for q in range(1 + length, 21)]
            assert got["induction"][layer, head] == pytest.approx(float(torch.stack(diagonal).mean()), abs=1e-5)
            for name, detector in (("previous_token", get_previous_token_head_detection_pattern),
                                   ("duplicate_token", get_duplicate_token_head_detection_pattern)):
                expected = np.mean([compute_head_attention_similarity_score(
                    pattern[b, head].clone(), detection_pattern=detector(ids[b:b + 1]), exclude_bos=False,
                    exclude_current_token=False, error_measure="mul") for b in range(3)])
                assert got[name][layer, head] == pytest.approx(expected, abs=1e-5), (name, layer, head)


def test_ov_scores_equal_transformer_lens_factored_matrices(tiny):
    from transformer_lens import FactoredMatrix

    from quanta_db.results.heads.head_scores import ov_scores

    model, _ = tiny
    got = ov_scores(model, block=13)
    reference = hooked_transformer(model, processed=True)
    first = reference.blocks[0]
    with torch.no_grad():
        effective = reference.W_E + first.mlp(first.ln2(reference.W_E[None]))[0]

    def copying(eigenvalues):
        return float(eigenvalues.sum().real / eigenvalues.abs().sum())

    for layer in range(reference.cfg.n_layers):
        for head in range(reference.cfg.n_heads):
            w_v, w_o = reference.W_V[layer, head].detach(), reference.W_O[layer, head].detach()
            resid = FactoredMatrix(w_v, w_o).eigenvalues
            assert got["ov_copy_resid"][layer, head] == pytest.approx(copying(resid), abs=1e-4)
            vocab = FactoredMatrix(effective @ w_v, w_o @ reference.W_U.detach()).eigenvalues
            assert got["ov_copy_vocab"][layer, head] == pytest.approx(copying(vocab), abs=1e-4)
            full = (effective @ w_v @ w_o @ reference.W_U).detach()
            expected = float((full.argmax(-1) == torch.arange(full.shape[0])).float().mean())
            assert got["frac_copy_argmax"][layer, head] == pytest.approx(expected, abs=1e-9)


def test_ingest_heads_stores_the_metrics_of_each_document(corpus_store, toy_model, store_snapshot):
    from quanta_db.errors import InputError
    from quanta_db.results.heads.job import ingest_heads
    from quanta_db.results.heads.token_metrics import head_token_metrics
    from quanta_db.runtime import models as model_sources

    result = ingest_heads(corpus_store, str(toy_model["dir"]), "toy", name="tiny", step=8, max_docs=5,
                          induction_length=8, progress=False)
    rows = corpus_store.query_df("SELECT * FROM head_token_metrics ORDER BY doc_id, pos, layer, head")
    tokens = corpus_store.query_df("SELECT doc_id, pos, token_id FROM tokens WHERE corpus = 'toy' ORDER BY doc_id, pos")
    lm = model_sources.load_model(model_sources.resolve_checkpoints(str(toy_model["dir"]), [8])[0], torch.float32,
                                  torch.device("cpu"))
    n_layers, n_heads = lm.config.num_hidden_layers, lm.config.num_attention_heads
    first_docs = sorted(tokens.doc_id.unique())[:5]
    for doc in first_docs[:2]:
        ids = torch.tensor(tokens[tokens.doc_id == doc].token_id.to_numpy())[None]
        if ids.shape[1] < 2:
            continue
        direct = head_token_metrics(lm, ids)
        mine = rows[rows.doc_id == doc]
        assert len(mine) == (ids.shape[1] - 1) * n_layers * n_heads and mine.pos.min() == 1
        for name in ("dla", "mover_attn", "mover_dla"):
            np.testing.assert_allclose(mine[name].to_numpy(), direct[name][0].reshape(-1).numpy(), atol=1e-4, rtol=1e-4)
    scores = corpus_store.query_df("SELECT * FROM head_scores")
    assert len(scores) == n_layers * n_heads and scores.induction.between(0, 1).all()
    assert ingest_heads(corpus_store, "tiny", "toy", step=8, max_docs=5, induction_length=8, progress=False).skipped
    before = store_snapshot(corpus_store)
    with pytest.raises(InputError, match="no checkpoint at step 3"):
        ingest_heads(corpus_store, "tiny", "toy", step=3, progress=False)
    with pytest.raises(InputError, match="vocab_range must lie within"):
        ingest_heads(corpus_store, "tiny", "toy", step=8, vocab_range=(5, 10**6), progress=False)
    assert store_snapshot(corpus_store) == before and result.rows_written > 0


def test_head_saved_analyses_against_pandas(corpus_store, toy_model):
    from quanta_db.results.filters.job import ingest_filters
    from quanta_db.results.heads.job import ingest_heads

    ingest_heads(corpus_store, str(toy_model["dir"]), "toy", name="tiny", step=8, max_docs=6, induction_length=8,
                 progress=False)
    ingest_filters(corpus_store, "toy", "bigram", progress=False)
    rows = corpus_store.query_df("SELECT * FROM head_token_metrics")
    mask = corpus_store.query_df("SELECT doc_id, pos, value FROM token_filters WHERE filter = 'bigram'")
    rows = rows.merge(mask, on=["doc_id", "pos"], how="left")
    summary = corpus_store.query_df("SELECT * FROM head_summary('tiny', 8, 'toy')").set_index(["layer", "head"])
    for (layer, head), mine in rows.groupby(["layer", "head"]):
        row = summary.loc[(layer, head)]
        assert row.tokens == "all" and row.n_tokens == len(mine)
        assert row.mean_dla == pytest.approx(mine.dla.mean(), rel=1e-5)
        np.testing.assert_allclose(row.dla_quantiles, np.quantile(mine.dla, [0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9,
                                                                            0.99, 0.999, 1]), rtol=1e-5, atol=1e-6)
    split = corpus_store.query_df("SELECT * FROM head_summary('tiny', 8, 'toy', filter_name := 'bigram')")
    assert set(split.tokens) == {"in bigram", "outside bigram"}
    first = split[(split.layer == 0) & (split["head"] == 0)].set_index("tokens")
    head00 = rows[(rows.layer == 0) & (rows["head"] == 0)]
    assert first.loc["in bigram"].n_tokens == head00.value.sum()
    assert first.loc["outside bigram"].mean_mover_dla == pytest.approx(head00[~head00.value].mover_dla.mean(), rel=1e-5)
    ratio = corpus_store.query_df("SELECT * FROM head_dla_ratio('tiny', 8, 'toy')").set_index(["layer", "head"])
    sums = rows.groupby(["layer", "head"])[["mover_dla", "dla"]].sum()
    np.testing.assert_allclose(ratio.dla_ratio, (sums.mover_dla / sums.dla).to_numpy(), rtol=1e-5)
    seed = corpus_store.query_df("SELECT * FROM head_seed_table('tiny', 8, 'toy')")
    outside = rows[~rows.value].groupby(["layer", "head"]).mover_dla.mean().sort_values(ascending=False)
    assert list(zip(seed.layer, seed["head"])) == list(outside.index)
    assert seed.induction.notna().all()


def test_head_cluster_loss_drop_against_pandas(corpus_store, toy_model):
    from quanta_db.results.heads.job import ingest_heads
    from quanta_db.results.losses.job import ingest_losses
    from quanta_db.results.quanta.job import ingest_clusters

    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[4, 8], progress=False)
    for step in (4, 8):
        ingest_heads(corpus_store, "tiny", "toy", step=step, induction_length=8, progress=False)
    clustering = ingest_clusters(corpus_store, "tiny", 8, "toy", loss_below=6.0, n_tokens=30, skip=2, n_clusters=3,
                                 n_init=4, seed=0, device="cpu", progress=False).run_id
    got = corpus_store.query_df("SELECT * FROM head_cluster_loss_drop('tiny', 4, 8, ?)", [clustering])
    labels = corpus_store.query_df("SELECT cluster, doc_id, pos FROM cluster_labels")
    losses = corpus_store.query_df("SELECT step, doc_id, pos, loss_nats FROM token_losses").pivot_table(
        index=["doc_id", "pos"], columns="step", values="loss_nats")
    heads = corpus_store.query_df("SELECT step, doc_id, pos, layer, head, dla FROM head_token_metrics").pivot_table(
        index=["doc_id", "pos", "layer", "head"], columns="step", values="dla").reset_index()
    joined = labels.merge(heads, on=["doc_id", "pos"]).merge(
        (losses[4] - losses[8]).rename("drop").reset_index(), on=["doc_id", "pos"])
    joined["gain"] = joined[8] - joined[4]
    expected = joined.groupby(["cluster", "layer", "head"]).agg(drop=("drop", "mean"), gain=("gain", "mean"),
                                                                 n=("gain", "size"))
    got = got.set_index(["cluster", "layer", "head"]).loc[expected.index]
    np.testing.assert_allclose(got.mean_loss_drop_nats, expected["drop"], rtol=1e-5)
    np.testing.assert_allclose(got.mean_dla_gain, expected.gain, rtol=1e-4, atol=1e-6)
    assert (got.n_tokens == expected.n).all() and len(got) == len(expected) > 0
