"""Per-token attention-head metrics of a GPT-NeoX model, computed layer by layer on the device.

For the token at position p (predicted at query position q = p − 1 from tokens 0..p−1), head h of
layer l, in TransformerLens's processed-weights convention (``from_pretrained`` defaults: LayerNorm
weights folded, value biases folded into the output bias, writing weights and unembedding centred):

- ``dla``: the head's output at q through the unembedding column of the actual token t = x_p,
  divided by the final LayerNorm scale at q (frozen from the clean run):
  dla = (A_h[q] · V_h) W_O,h · ū_q, with ū_q = centre_d(w_lnf ⊙ (W_U[t] − mean_v W_U[v])) / scale_q.
  V_h excludes the value bias and the attention LayerNorm's bias (folded away by TransformerLens),
  and centring ū over d_model equals centring the head's output (centred W_O).
- ``mover_attn``: Σ_s A_h[q, s] over the positions s ≤ q whose token equals t (earlier copies).
- ``mover_dla``: the same sum of A_h[q, s] (V_h[s] W_O,h · ū_q): the DLA of only that attention.

Nothing of size [layer, batch, pos, head, vocab] exists: the unembedding is indexed by the target
tokens, and each layer's pattern is used in its forward hook and dropped.
"""

from __future__ import annotations

import torch

from quanta_db.runtime.hooks import eager_attention, transformer_layers


def head_weights(layer, n_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_V [H, d_model, d_head], W_O [H, d_head, d_model]) of one GPT-NeoX layer (raw weights)."""
    attention = layer.attention
    d_model = attention.dense.weight.shape[0]
    d_head = d_model // n_heads
    qkv = attention.query_key_value.weight.view(n_heads, 3, d_head, d_model)  # per head: q, k, v rows
    w_v = qkv[:, 2].transpose(1, 2)
    w_o = attention.dense.weight.view(d_model, n_heads, d_head).permute(1, 2, 0)
    return w_v.float(), w_o.float()


def _target_directions(model, targets: torch.Tensor, final_scale: torch.Tensor) -> torch.Tensor:
    """ū [B, T, d_model]: the centred, LayerNorm-folded, centred-unembedding column of each target
    token divided by the final LayerNorm scale of its query position."""
    w_u = model.get_output_embeddings().weight.float()  # [vocab, d_model]
    w_ln = model.gpt_neox.final_layer_norm.weight.float()
    u = (w_u[targets] - w_u.mean(0)) * w_ln
    u = u - u.mean(-1, keepdim=True)
    return u / final_scale[..., None]


@torch.no_grad()
def each_layer(model, ids: torch.Tensor, visit) -> torch.Tensor:
    """One forward pass calling ``visit(index, attention input = LayerNorm output [B, T, d_model],
    attention probabilities [B, H, T, T])`` inside each layer's hook (so no pattern outlives its
    layer); returns the final LayerNorm's input [B, T, d_model]."""
    captured: dict[str, torch.Tensor] = {}

    def keep_input(index):
        def hook(module, args, kwargs):
            captured[f"in{index}"] = kwargs.get("hidden_states", args[0] if args else None).float()
        return hook

    def call_visit(index):
        def hook(module, args, kwargs, output):
            visit(index, captured.pop(f"in{index}"), output[1].float())
        return hook

    def keep_final(module, args):
        captured["final"] = args[0].float()

    handles = [model.gpt_neox.final_layer_norm.register_forward_pre_hook(keep_final)]
    for index, layer in enumerate(transformer_layers(model)):
        handles.append(layer.attention.register_forward_pre_hook(keep_input(index), with_kwargs=True))
        handles.append(layer.attention.register_forward_hook(call_visit(index), with_kwargs=True))
    try:
        with eager_attention(model):
            model(input_ids=ids.to(model.device))
    finally:
        for handle in handles:
            handle.remove()
    return captured["final"]


@torch.no_grad()
def head_token_metrics(model, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """``dla``, ``mover_attn``, ``mover_dla`` as [B, T − 1, n_layers, n_heads] for query positions
    0..T−2 (row q is the metric of token q + 1). ``ids`` [B, T] is right-padded: rows past a
    document's end are meaningless and must be dropped by the caller. DLA is linear in 1/scale,
    so each layer computes it unscaled in its hook and all are divided by the final scale after."""
    config = model.config
    n_heads, layers = config.num_attention_heads, transformer_layers(model)
    ids = ids.to(model.device)
    targets = ids[:, 1:]
    # copies[b, q, s]: token s (s ≤ q) equals the token predicted at q
    causal = torch.ones(ids.shape[1] - 1, ids.shape[1] - 1, dtype=torch.bool, device=ids.device).tril()
    copies = (ids[:, None, :-1] == targets[:, :, None]) & causal
    direction = _target_directions(model, targets, torch.ones(targets.shape, device=ids.device))
    shape = (ids.shape[0], ids.shape[1] - 1, len(layers), n_heads)
    out = {name: torch.empty(shape, device=ids.device) for name in ("dla", "mover_attn", "mover_dla")}

    def visit(index, ln_out, pattern):
        w_v, w_o = head_weights(layers[index], n_heads)
        bias = layers[index].input_layernorm.bias.float()
        values = torch.einsum("btd,hde->bhte", ln_out[:, :-1] - bias, w_v)  # [B, H, T-1, d_head], no biases
        pattern = pattern[:, :, :-1, :-1]  # queries 0..T-2 over keys 0..T-2 (causal)
        back = torch.einsum("hed,bqd->bhqe", w_o, direction)  # W_O,h ū_q (unscaled)
        out["dla"][:, :, index] = ((pattern @ values) * back).sum(-1).transpose(1, 2)
        moved = pattern * copies[:, None]
        out["mover_attn"][:, :, index] = moved.sum(-1).transpose(1, 2)
        out["mover_dla"][:, :, index] = ((moved @ values) * back).sum(-1).transpose(1, 2)

    final = each_layer(model, ids, visit)[:, :-1]
    scale = (final.var(-1, unbiased=False) + model.gpt_neox.final_layer_norm.eps).sqrt()
    for name in ("dla", "mover_dla"):
        out[name] /= scale[:, :, None, None]
    return out
