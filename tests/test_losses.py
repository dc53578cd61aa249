"""Per-token losses against transformers' own loss and TransformerLens' per-token loss."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from quanta_db.errors import InputError
from quanta_db.results.losses import job as loss_job
from quanta_db.results.losses.compute import batch_token_losses
from quanta_db.results.losses.job import ingest_losses
from quanta_db.runtime.batching import plan_batches
from quanta_db.runtime.models import PYTHIA_STEPS, parse_steps, resolve_checkpoints
from tests.helpers import staging_entries


@pytest.fixture
def loss_store(corpus_store, toy_model):
    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", progress=False)
    return corpus_store


def _reference_losses(model_dir, token_ids):
    """transformers: the model's own logits, one document at a time, float32."""
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).eval()
    ids = torch.tensor(token_ids, dtype=torch.long)[None]
    with torch.no_grad():
        out = model(input_ids=ids, labels=ids)
    per_token = torch.nn.functional.cross_entropy(out.logits[0, :-1], ids[0, 1:], reduction="none")
    return out.logits, per_token.numpy(), float(out.loss)


def test_losses_match_transformers_and_transformer_lens(loss_store, toy_model):
    from transformer_lens.utilities import lm_cross_entropy_loss

    rows = loss_store.query_df(
        "SELECT l.doc_id, l.step, list(l.loss_nats ORDER BY l.pos) AS loss, list(t.token_id ORDER BY t.pos) AS ids "
        "FROM token_losses l JOIN tokens t USING (corpus, doc_id, pos) WHERE l.model = 'tiny' "
        "GROUP BY l.doc_id, l.step ORDER BY l.step, l.doc_id"
    )
    tokens = loss_store.query_df("SELECT doc_id, list(token_id ORDER BY pos) AS ids FROM tokens GROUP BY doc_id")
    token_map = {int(d): list(ids) for d, ids in tokens.itertuples(index=False)}
    checked = 0
    for doc_id, step, loss, _ in rows.itertuples(index=False):
        if doc_id % 7:  # a sample of documents keeps the test fast
            continue
        ids = token_map[int(doc_id)]
        logits, reference, mean_loss = _reference_losses(toy_model["dir"] / f"step{step}", ids)
        ours = np.asarray(loss, dtype=np.float32)
        np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
        tl = lm_cross_entropy_loss(logits, torch.tensor(ids, dtype=torch.long)[None], per_token=True)[0].numpy()
        np.testing.assert_allclose(ours, tl, atol=1e-4, rtol=0)
        assert abs(ours.mean() - mean_loss) < 1e-4
        checked += 1
    assert checked >= 3 * 3


def test_one_row_per_predictable_token_and_checkpoints_recorded(loss_store):
    counts = loss_store.query_df(
        "SELECT step, count(*) AS n, min(pos) AS lo FROM token_losses GROUP BY step ORDER BY step")
    n_predictable = loss_store.query_df("SELECT count(*) AS n FROM tokens WHERE pos >= 1")["n"][0]
    assert counts["step"].tolist() == [0, 4, 8]
    assert (counts["n"] == n_predictable).all() and (counts["lo"] == 1).all()
    steps = loss_store.query_df("SELECT step FROM checkpoints WHERE model = 'tiny' ORDER BY step")["step"].tolist()
    assert steps == [0, 4, 8]
    model = loss_store.query_df("SELECT n_params, n_layers, d_model FROM models WHERE model = 'tiny'")
    assert model.values.tolist()[0][1:] == [2, 32]


def test_batching_and_padding_do_not_change_losses(toy_model, toy_inputs):
    model = AutoModelForCausalLM.from_pretrained(str(toy_model["dir"] / "step8")).eval()
    rng = np.random.default_rng(0)
    sequences = [rng.integers(0, 300, size=n) for n in (5, 40, 17, 2, 33)]
    together = batch_token_losses(model, sequences, torch.device("cpu"))
    for seq, loss in zip(sequences, together):
        alone = batch_token_losses(model, [seq], torch.device("cpu"))[0]
        np.testing.assert_allclose(loss, alone, atol=1e-5)


def test_plan_batches_respects_budget():
    lengths = np.array([10, 3, 50, 1, 20, 20])
    batches = plan_batches(lengths, token_budget=45)
    assert sorted(np.concatenate(batches).tolist()) == [0, 1, 2, 4, 5]  # the 1-token document is skipped
    for batch in batches:
        assert len(batch) == 1 or len(batch) * lengths[batch].max() <= 45


def test_rerun_skips_and_resume_after_crash(corpus_store, toy_model, monkeypatch, store_snapshot):
    calls = {"n": 0}
    original = loss_job.checkpoint_losses

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(loss_job, "checkpoint_losses", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", progress=False)
    assert corpus_store.query_df("SELECT DISTINCT step FROM token_losses")["step"].tolist() == [0]
    assert staging_entries(corpus_store) == []
    monkeypatch.setattr(loss_job, "checkpoint_losses", original)
    results = ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", progress=False)
    assert [r.skipped for r in results] == [True, False, False]
    before = store_snapshot(corpus_store)
    again = ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", progress=False)
    assert all(r.skipped for r in again) and store_snapshot(corpus_store) == before


def test_shards_cover_the_corpus_once(corpus_store, toy_model):
    for i in range(3):
        ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], shard=(i, 3), progress=False)
    dup = corpus_store.query_df("SELECT count(*) AS n, count(DISTINCT (doc_id, pos)) AS d FROM token_losses")
    n_predictable = corpus_store.query_df("SELECT count(*) AS n FROM tokens WHERE pos >= 1")["n"][0]
    assert dup["n"][0] == dup["d"][0] == n_predictable
    with pytest.raises(InputError, match="--shard"):
        ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], progress=False)
    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], force=True, progress=False)
    assert corpus_store.query_df("SELECT count(*) AS n FROM token_losses")["n"][0] == n_predictable


def test_wrong_tokenizer_is_refused(store, toy_model, tmp_path, toy_inputs, store_snapshot):
    from quanta_db.demo.toy_corpus import train_tokenizer
    from quanta_db.results.corpus.job import ingest_corpus

    other = train_tokenizer(["completely different text " * 50], tmp_path / "other_tok", vocab_size=300)
    ingest_corpus(store, toy_inputs["corpus"], "other", str(other), max_tokens=32, progress=False)
    before = store_snapshot(store)
    with pytest.raises(InputError, match="vocabulary differs"):
        ingest_losses(store, str(toy_model["dir"]), "other", progress=False)
    with pytest.raises(InputError, match="unknown corpus"):
        ingest_losses(store, str(toy_model["dir"]), "nope", progress=False)
    with pytest.raises(InputError, match="no checkpoint for step"):
        ingest_losses(store, str(toy_model["dir"]), "other", steps=[3], progress=False)
    assert store_snapshot(store) == before


def test_bfloat16_is_close(corpus_store, toy_model):
    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], progress=False)
    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny_bf16", steps=[8], dtype="bfloat16",
                  progress=False)
    diff = corpus_store.query_df(
        "SELECT max(abs(a.loss_nats - b.loss_nats)) AS worst, avg(abs(a.loss_nats - b.loss_nats)) AS mean "
        "FROM token_losses a JOIN token_losses b USING (corpus, doc_id, pos, step) "
        "WHERE a.model = 'tiny' AND b.model = 'tiny_bf16'")
    assert 0 < diff["mean"][0] < 0.05 and diff["worst"][0] < 0.5


def test_bfloat16_scoring_takes_log_softmax_in_float32(toy_model, toy_inputs):
    """Same bf16 model, same forward shape: our losses equal cross_entropy(logits.float()); a
    log-softmax taken in bf16 is off by ~1e-2 nats and fails this."""
    from transformers import AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(toy_model["dir"] / "step8"), dtype=torch.bfloat16).eval()
    tok = AutoTokenizer.from_pretrained(str(toy_inputs["tokenizer"]))
    documents = [np.array(tok.encode(r["text"])[:64], dtype=np.int64) for r in toy_inputs["records"][:6]]
    for ids in [d for d in documents if len(d) >= 2]:
        ours = batch_token_losses(model, [ids], "cpu")[0]
        with torch.no_grad():
            logits = model(input_ids=torch.from_numpy(ids)[None]).logits[0, :-1]
        reference = torch.nn.functional.cross_entropy(logits.float(), torch.from_numpy(ids[1:]), reduction="none")
        np.testing.assert_allclose(ours, reference.numpy(), rtol=0, atol=1e-5)


def test_checkpoint_resolution():
    assert len(PYTHIA_STEPS) == 154 and PYTHIA_STEPS[:12] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000]
    assert PYTHIA_STEPS[-1] == 143000
    hub = resolve_checkpoints("EleutherAI/pythia-70m", parse_steps("0,512"))
    assert [(c.step, c.revision, c.location) for c in hub] == [(0, "step0", "EleutherAI/pythia-70m"),
                                                               (512, "step512", "EleutherAI/pythia-70m")]
    assert len(resolve_checkpoints("EleutherAI/pythia-70m", parse_steps("all"))) == 154
    assert resolve_checkpoints("EleutherAI/pythia-70m")[0].revision == "main"
    with pytest.raises(InputError):
        parse_steps("1,x")


def test_a_model_with_fewer_embeddings_than_the_tokenizer_is_refused(corpus_store, toy_inputs, tmp_path,
                                                                        store_snapshot):
    from transformers import AutoTokenizer

    from quanta_db.demo.toy_models import gpt_neox_config, random_model

    small = tmp_path / "small"
    random_model(gpt_neox_config(64, 32, 2, 4, n_ctx=256)).save_pretrained(small)
    AutoTokenizer.from_pretrained(str(toy_inputs["tokenizer"])).save_pretrained(small)
    before = store_snapshot(corpus_store)
    with pytest.raises(InputError, match="has 64 token embeddings but corpus 'toy' uses token id"):
        ingest_losses(corpus_store, str(small), "toy", name="small", progress=False)
    assert store_snapshot(corpus_store) == before
    assert staging_entries(corpus_store) == []


def test_runs_record_the_runs_they_read(loss_store):
    import json

    corpus_run = loss_store.catalog_rows("corpora", corpus="toy")[0]["run_id"]
    inputs = loss_store.query_df("SELECT inputs FROM runs WHERE kind = 'losses'")["inputs"]
    assert len(inputs) == 3 and all(json.loads(i) == [corpus_run] for i in inputs)
    from importlib.metadata import version

    from quanta_db.store.runs import params_hash

    row = loss_store.query_df("SELECT params, params_hash FROM runs WHERE kind = 'losses' LIMIT 1").iloc[0]
    params = json.loads(row["params"])
    assert params.pop("environment")["torch"] == version("torch")
    assert row["params_hash"] == params_hash("losses", params)  # recorded, not part of the identity


def test_pipelined_batches_equal_one_document_at_a_time(corpus_store, toy_model):
    """Batch i + 1 is queued before batch i's losses are collected; the rows must not move."""
    ingest_losses(corpus_store, str(toy_model["dir"]), "toy", name="tiny", steps=[8], batch_size=2,
                  compile_model=True, progress=False)  # --compile is ignored on CPU
    stored = corpus_store.query_df("SELECT doc_id, pos, loss_nats FROM token_losses ORDER BY doc_id, pos")
    model = AutoModelForCausalLM.from_pretrained(str(toy_model["dir"] / "step8")).eval()
    tokens = corpus_store.query_df("SELECT doc_id, token_id FROM tokens WHERE corpus = 'toy' ORDER BY doc_id, pos")
    for doc, group in list(tokens.groupby("doc_id"))[:12]:
        if len(group) < 2:
            continue
        alone = batch_token_losses(model, [group.token_id.to_numpy()], "cpu")[0]
        np.testing.assert_allclose(stored[stored.doc_id == doc].loss_nats.to_numpy(), alone, rtol=1e-5, atol=1e-5)
