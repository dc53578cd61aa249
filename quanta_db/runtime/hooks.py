"""Activation capture at TransformerLens / sae-lens hook names on a transformers GPT-NeoX model.

Hook names map to GPT-NeoX modules (``L`` = layer index, ``model.gpt_neox.layers[L]``):

==============================  ==================================================================
``blocks.L.hook_resid_pre``     input of layer L (the residual stream before block L)
``blocks.L.hook_resid_post``    output of layer L (after block L; ``output_hidden_states`` gives
                                the *final-LayerNorm-ed* stream for the last layer, so a hook it is)
``blocks.L.hook_attn_out``      output of ``layers[L].attention`` (``dense`` applied, bias included)
``blocks.L.hook_mlp_out``       output of ``layers[L].mlp``
``blocks.L.attn.hook_z``        input of ``attention.dense``: the heads' z as [..., n_heads, d_head]
``blocks.L.attn.hook_result``   per-head output z_h @ W_O[:, h]ᵀ as [..., n_heads, d_model]
                                (no bias: sum over heads + ``dense.bias`` = ``hook_attn_out``)
==============================  ==================================================================

With parallel residual (Pythia) ``resid_post = resid_pre + attn_out + mlp_out``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from quanta_db.errors import InputError

HOOK_NAME = re.compile(r"^blocks\.(\d+)\.(hook_resid_pre|hook_resid_post|hook_attn_out|hook_mlp_out|"
                       r"attn\.hook_z|attn\.hook_result)$")
HOOK_POINTS = ("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "attn.hook_z",
               "attn.hook_result")


@dataclass(frozen=True)
class HookPoint:
    layer: int
    point: str  # one of HOOK_POINTS

    @property
    def name(self) -> str:
        return f"blocks.{self.layer}.{self.point}"


def parse_hook_name(name: str, n_layers: int | None = None) -> HookPoint:
    """``blocks.L.<point>`` → HookPoint; an unknown name or layer is a one-line error."""
    match = HOOK_NAME.match(name)
    if not match:
        raise InputError(f"unknown hook name {name!r}; expected blocks.L.<point> with point one of "
                         + ", ".join(HOOK_POINTS))
    hook = HookPoint(int(match.group(1)), match.group(2))
    if n_layers is not None and hook.layer >= n_layers:
        raise InputError(f"hook {name!r} names layer {hook.layer}, but the model has {n_layers} layers")
    return hook


def transformer_layers(model):
    """The decoder layers of a GPT-NeoX model (a one-line error for other architectures)."""
    try:
        return model.gpt_neox.layers
    except AttributeError:
        raise InputError(f"activation capture supports GPT-NeoX models, not {type(model).__name__}") from None


@contextmanager
def eager_attention(model):
    """Run ``model`` with the eager attention implementation: the only one that returns the
    attention probabilities, and whose backward has batching rules for ``torch.func.vmap``."""
    previous = model.config._attn_implementation
    model.config._attn_implementation = "eager"
    try:
        yield
    finally:
        model.config._attn_implementation = previous


def _first(output):
    return output[0] if isinstance(output, tuple) else output


def _install(layer, hook: HookPoint, store: dict[str, torch.Tensor]):
    """Register the forward hook that writes ``hook``'s activation into ``store``."""
    name = hook.name
    if hook.point == "hook_resid_pre":
        def pre(module, args, kwargs):
            store[name] = args[0] if args else kwargs["hidden_states"]
        return layer.register_forward_pre_hook(pre, with_kwargs=True)
    if hook.point in ("attn.hook_z", "attn.hook_result"):
        attention = layer.attention
        n_heads = attention.config.num_attention_heads

        def z_hook(module, args):
            z = args[0].unflatten(-1, (n_heads, -1))
            if hook.point == "attn.hook_z":
                store[name] = z
            else:  # [..., heads, d_head] x [d_model, heads, d_head] -> [..., heads, d_model]
                w_o = module.weight.unflatten(1, (n_heads, -1))
                store[name] = torch.einsum("...hd,mhd->...hm", z, w_o)
        return attention.dense.register_forward_pre_hook(z_hook)
    module = {"hook_resid_post": layer, "hook_attn_out": layer.attention, "hook_mlp_out": layer.mlp}[hook.point]

    def post(module, args, output):
        store[name] = _first(output)
    return module.register_forward_hook(post)


@contextmanager
def capture(model, hook_names: list[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, every forward of ``model`` fills the yielded dict with the activation
    at each hook name (the latest forward's, on the model's device, not detached)."""
    layers = transformer_layers(model)
    hooks = [parse_hook_name(n, len(layers)) for n in hook_names]
    store: dict[str, torch.Tensor] = {}
    handles = [_install(layers[h.layer], h, store) for h in hooks]
    try:
        yield store
    finally:
        for handle in handles:
            handle.remove()


class StopForward(Exception):
    """Raised by :func:`activations_until` to skip the layers after the last hook needed."""


def activations_until(model, input_ids: torch.Tensor, hook_names: list[str]) -> dict[str, torch.Tensor]:
    """Activations at ``hook_names`` for ``input_ids``, running the model only as far as the
    deepest requested layer (the remaining layers and the unembedding are skipped)."""
    layers = transformer_layers(model)
    hooks = [parse_hook_name(n, len(layers)) for n in hook_names]
    last = max(h.layer for h in hooks)

    def stop(module, args, output):
        raise StopForward

    with capture(model, hook_names) as store:
        handle = layers[last].register_forward_hook(stop)
        try:
            model.gpt_neox(input_ids=input_ids)
        except StopForward:
            pass
        finally:
            handle.remove()
    return dict(store)


@contextmanager
def replace_activation(model, hook_name: str, fn) -> Iterator[None]:
    """Within the block, every forward of ``model`` replaces the activation at ``hook_name`` by
    ``fn(activation)`` (same shape; for ``attn.hook_z`` the [..., heads, d_head] form), e.g. an
    SAE's reconstruction spliced into the forward pass."""
    layers = transformer_layers(model)
    hook = parse_hook_name(hook_name, len(layers))
    layer = layers[hook.layer]
    if hook.point == "hook_resid_pre":
        def pre(module, args, kwargs):
            if args:
                return (fn(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}
        handle = layer.register_forward_pre_hook(pre, with_kwargs=True)
    elif hook.point == "attn.hook_z":
        n_heads = layer.attention.config.num_attention_heads

        def z_pre(module, args):
            return (fn(args[0].unflatten(-1, (n_heads, -1))).flatten(-2), *args[1:])
        handle = layer.attention.dense.register_forward_pre_hook(z_pre)
    elif hook.point in ("hook_resid_post", "hook_attn_out", "hook_mlp_out"):
        module = {"hook_resid_post": layer, "hook_attn_out": layer.attention, "hook_mlp_out": layer.mlp}[hook.point]

        def post(module, args, output):
            if isinstance(output, tuple):
                return (fn(output[0]), *output[1:])
            return fn(output)
        handle = module.register_forward_hook(post)
    else:
        raise InputError(f"hook {hook_name}: its activation cannot be replaced")
    try:
        yield
    finally:
        handle.remove()
