"""The shared model runtime: activation capture at hook names, batching, memory budgets."""

import numpy as np
import pytest
import torch

from quanta_db.demo.toy_models import gpt_neox_config, random_model
from quanta_db.errors import InputError
from quanta_db.runtime.batching import pad_batch, plan_batches, run_batches
from quanta_db.runtime.device import memory_budget_bytes, parse_batch_size
from quanta_db.runtime.hooks import activations_until, capture, parse_hook_name

N_LAYERS = 3


@pytest.fixture(scope="module")
def model():
    return random_model(gpt_neox_config(200, d_model=32, n_layers=N_LAYERS, n_heads=4, n_ctx=64), seed=3)


@pytest.fixture(scope="module")
def ids():
    return torch.as_tensor(np.random.default_rng(0).integers(0, 200, size=(2, 17)))


def _names(layer):
    return [f"blocks.{layer}.{p}" for p in ("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out",
                                            "attn.hook_z", "attn.hook_result")]


@torch.no_grad()
def test_residual_hooks_match_hidden_states(model, ids):
    names = [n for layer in range(N_LAYERS) for n in _names(layer)]
    with capture(model, names) as acts:
        out = model(input_ids=ids, output_hidden_states=True)
    hidden = out.hidden_states
    for layer in range(N_LAYERS):
        torch.testing.assert_close(acts[f"blocks.{layer}.hook_resid_pre"], hidden[layer])
        if layer < N_LAYERS - 1:
            torch.testing.assert_close(acts[f"blocks.{layer}.hook_resid_post"], hidden[layer + 1])
    # the last hidden state is taken after the final LayerNorm
    last = acts[f"blocks.{N_LAYERS - 1}.hook_resid_post"]
    torch.testing.assert_close(model.gpt_neox.final_layer_norm(last), hidden[-1])


@torch.no_grad()
def test_block_outputs_add_up(model, ids):
    with capture(model, [n for layer in range(N_LAYERS) for n in _names(layer)]) as acts:
        model(input_ids=ids)
    for layer in range(N_LAYERS):
        a = {n.split(".", 2)[2]: acts[n] for n in _names(layer)}
        # parallel residual (Pythia): resid_post = resid_pre + attn_out + mlp_out
        torch.testing.assert_close(a["hook_resid_post"], a["hook_resid_pre"] + a["hook_attn_out"] + a["hook_mlp_out"],
                                   atol=1e-5, rtol=1e-5)
        dense = model.gpt_neox.layers[layer].attention.dense
        torch.testing.assert_close(a["attn.hook_result"].sum(-2) + dense.bias, a["hook_attn_out"], atol=1e-5, rtol=1e-5)
        assert a["attn.hook_z"].shape == (2, 17, 4, 8)
        # head h alone: z_h through its slice of W_O
        h = 2
        z_h = a["attn.hook_z"][..., h, :]
        torch.testing.assert_close(a["attn.hook_result"][..., h, :], z_h @ dense.weight[:, h * 8:(h + 1) * 8].T,
                                   atol=1e-6, rtol=1e-5)


@torch.no_grad()
def test_activations_until_stops_early_with_the_same_values(model, ids):
    with capture(model, ["blocks.1.hook_resid_post"]) as acts:
        model(input_ids=ids)
    calls = []
    handle = model.gpt_neox.layers[2].register_forward_hook(lambda *a: calls.append(1))
    try:
        early = activations_until(model, ids, ["blocks.1.hook_resid_post"])
    finally:
        handle.remove()
    torch.testing.assert_close(early["blocks.1.hook_resid_post"], acts["blocks.1.hook_resid_post"])
    assert calls == []  # layer 2 never ran


def test_hook_names_are_checked(model, ids):
    assert parse_hook_name("blocks.4.attn.hook_z").layer == 4
    with pytest.raises(InputError, match="unknown hook name"):
        parse_hook_name("blocks.0.hook_resid_mid")
    with pytest.raises(InputError, match="has 3 layers"):
        with capture(model, ["blocks.3.hook_resid_post"]):
            pass


def test_run_batches_halves_on_out_of_memory():
    seen = []

    def run(batch):
        if len(batch) > 2:
            raise torch.OutOfMemoryError("simulated")
        seen.append(list(batch))
        return [int(i) * 10 for i in batch]

    results = list(run_batches([np.arange(7), np.arange(7, 9)], run))
    assert [b.tolist() for b, _ in results] == [[0], [1, 2], [3, 4], [5, 6], [7, 8]]
    assert [r for _, rs in results for r in rs] == [i * 10 for i in range(9)]


def test_run_batches_reraises_when_one_sequence_does_not_fit():
    def run(batch):
        raise torch.OutOfMemoryError("simulated")

    with pytest.raises(torch.OutOfMemoryError):
        list(run_batches([np.arange(2)], run))


def test_plan_and_pad():
    lengths = np.array([5, 1, 9, 3])
    batches = plan_batches(lengths, token_budget=10)
    assert [b.tolist() for b in batches] == [[2], [0, 3]]  # longest first; the 1-token sequence scores nothing
    padded = pad_batch([np.array([1, 2, 3]), np.array([4])])
    assert padded.tolist() == [[1, 2, 3], [4, 0, 0]]


def test_budgets_and_batch_sizes():
    cpu = torch.device("cpu")
    assert memory_budget_bytes(cpu, 0.5, cpu_bytes=123.0) == 123.0
    assert memory_budget_bytes(cpu, 0.5, cpu_bytes=123.0, override_gb=2) == 2 * 2**30
    assert parse_batch_size("auto") == "auto" and parse_batch_size("8") == 8
    for bad in ("0", "-3", "many"):
        with pytest.raises(InputError, match="^batch_size must be"):
            parse_batch_size(bad)


def test_every_hook_matches_transformer_lens_run_with_cache(model, ids):
    from quanta_db.runtime.lens_reference import hooked_transformer

    reference = hooked_transformer(model)
    reference.set_use_attn_result(True)
    with torch.no_grad():
        logits, cache = reference.run_with_cache(ids)
        np.testing.assert_allclose(logits.numpy(), model(ids).logits.numpy(), atol=1e-5)
        names = [f"blocks.{layer}.{point}" for layer in range(model.config.num_hidden_layers)
                 for point in ("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "attn.hook_z",
                               "attn.hook_result")]
        with capture(model, names) as store:
            model(ids)
            for name in names:
                np.testing.assert_allclose(store[name].numpy(), cache[name].numpy(), atol=1e-5, err_msg=name)


def test_token_budget_from_batch_size_or_memory():
    from quanta_db.runtime.device import token_budget

    cpu = torch.device("cpu")
    assert token_budget(3, cpu, n_ctx=128, bytes_per_token=100, gpu_fraction=0.5, cpu_tokens=4096) == 3 * 128
    assert token_budget("auto", cpu, n_ctx=128, bytes_per_token=100, gpu_fraction=0.5, cpu_tokens=4096) == 4096
    assert token_budget("auto", cpu, n_ctx=8192, bytes_per_token=100, gpu_fraction=0.5, cpu_tokens=4096) == 8192
    assert token_budget("auto", cpu, n_ctx=128, bytes_per_token=100, gpu_fraction=0.5, cpu_tokens=64,
                        min_tokens=1024) == 1024
    assert token_budget("auto", cpu, n_ctx=128, bytes_per_token=100, gpu_fraction=0.5, cpu_tokens=4096,
                        max_tokens=1000) == 1000
