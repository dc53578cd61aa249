"""Per-head scores of a GPT-NeoX model: attention-pattern detectors and OV-circuit copying.

Patterns, on ``n_seqs`` sequences of ``length`` random tokens repeated once (seeded, drawn from a
vocabulary range, after the tokenizer's BOS when it has one):

- ``induction``: mean attention, over the queries of the second repeat, on the induction
  diagonal (the token after the query token's earlier copy: key = query − length + 1);
- ``previous_token`` and ``duplicate_token``: TransformerLens's head-detector scores (error
  measure "mul": Σ pattern ⊙ detection / Σ pattern, averaged over the sequences).

OV circuit, in TransformerLens's processed weights (LayerNorm folded and reading weights centred,
writing weights and unembedding centred), per head h of layer l:

- ``ov_copy_resid`` = Re(Σλ) / Σ|λ| over the eigenvalues λ of W_V W_O (residual basis);
- ``ov_copy_vocab``: the same for E W_V W_O W_U in the vocabulary basis, with E the effective
  embedding W_E + MLP0(W_E) (centred), from the d_head × d_head matrix (W_O W_U)(E W_V), whose
  nonzero eigenvalues are those of the d_vocab² product (never formed);
- ``frac_copy_argmax``: the fraction of tokens t whose largest output through the full circuit
  E W_V W_O W_U (row t, computed in blocks of rows) is t itself.
"""

from __future__ import annotations

import numpy as np
import torch

from quanta_db.results.heads.token_metrics import each_layer, head_weights
from quanta_db.runtime.hooks import transformer_layers


def repeated_tokens(n_seqs: int, length: int, vocab_range: tuple[int, int], bos: int | None, seed: int) -> torch.Tensor:
    """[n_seqs, (BOS) + 2 * length] random tokens from ``vocab_range`` [low, high), each run twice."""
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(vocab_range[0], vocab_range[1], (n_seqs, length), generator=generator)
    ids = torch.cat([first, first], dim=1)
    if bos is not None:
        ids = torch.cat([torch.full((n_seqs, 1), bos), ids], dim=1)
    return ids


def detection_patterns(ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """TransformerLens's previous-token and duplicate-token detection patterns per sequence, [B, T, T]."""
    t = ids.shape[1]
    previous = torch.zeros(t, t)
    previous[1:, :-1] = torch.eye(t - 1)
    duplicate = (ids[:, :, None] == ids[:, None, :]).float().tril(-1)
    return {"previous_token": previous.expand(len(ids), t, t), "duplicate_token": duplicate}


@torch.no_grad()
def pattern_scores(model, ids: torch.Tensor, length: int) -> dict[str, np.ndarray]:
    """[n_layers, n_heads] induction, previous_token and duplicate_token scores on ``ids`` (from
    :func:`repeated_tokens` with this ``length``)."""
    offset = ids.shape[1] - 2 * length  # 1 with a BOS, else 0
    detect = {k: v.to(model.device) for k, v in detection_patterns(ids).items()}
    queries = torch.arange(offset + length, ids.shape[1], device=model.device)
    n_layers, n_heads = len(transformer_layers(model)), model.config.num_attention_heads
    out = {name: np.zeros((n_layers, n_heads)) for name in ("induction", "previous_token", "duplicate_token")}

    def visit(index, ln_out, pattern):
        out["induction"][index] = pattern[:, :, queries, queries - length + 1].mean(dim=(0, 2)).cpu().numpy()
        for name, mask in detect.items():
            score = (pattern * mask[:, None]).sum(dim=(2, 3)) / pattern.sum(dim=(2, 3))
            out[name][index] = score.mean(0).cpu().numpy()

    each_layer(model, ids, visit)
    return out


def _centre_rows(w: torch.Tensor) -> torch.Tensor:
    return w - w.mean(dim=-2, keepdim=True)


@torch.no_grad()
def processed_weights(model) -> dict[str, torch.Tensor]:
    """TransformerLens-processed W_V [L, H, d_model, d_head], W_O [L, H, d_head, d_model],
    W_U [d_model, vocab] and the effective embedding E [vocab, d_model], float64."""
    layers, n_heads = transformer_layers(model), model.config.num_attention_heads
    w_v, w_o = [], []
    for layer in layers:
        v, o = head_weights(layer, n_heads)
        w_v.append(_centre_rows(layer.input_layernorm.weight.double()[None, :, None] * v.double()))
        w_o.append(o.double() - o.double().mean(-1, keepdim=True))
    w_u = model.get_output_embeddings().weight.double().T * model.gpt_neox.final_layer_norm.weight.double()[:, None]
    w_u = _centre_rows(w_u)
    w_u = w_u - w_u.mean(-1, keepdim=True)
    embedding = model.gpt_neox.embed_in.weight
    first = layers[0]
    effective = embedding.double() + first.mlp(first.post_attention_layernorm(embedding)).double()
    effective = effective - effective.mean(-1, keepdim=True)
    return {"W_V": torch.stack(w_v), "W_O": torch.stack(w_o), "W_U": w_u, "E": effective}


def _copying(eigenvalues: torch.Tensor) -> float:
    total = eigenvalues.abs().sum()
    return float(eigenvalues.sum().real / total) if total > 0 else 0.0


@torch.no_grad()
def ov_scores(model, block: int = 4096) -> dict[str, np.ndarray]:
    """[n_layers, n_heads] ov_copy_resid, ov_copy_vocab and frac_copy_argmax."""
    w = processed_weights(model)
    n_layers, n_heads = w["W_V"].shape[:2]
    out = {name: np.zeros((n_layers, n_heads)) for name in ("ov_copy_resid", "ov_copy_vocab", "frac_copy_argmax")}
    vocab = w["E"].shape[0]
    tokens = torch.arange(vocab, device=w["E"].device)
    for layer in range(n_layers):
        for head in range(n_heads):
            w_v, w_o = w["W_V"][layer, head], w["W_O"][layer, head]
            out["ov_copy_resid"][layer, head] = _copying(torch.linalg.eigvals(w_o @ w_v))
            reads, writes = w["E"] @ w_v, w_o @ w["W_U"]  # [vocab, d_head], [d_head, vocab]
            out["ov_copy_vocab"][layer, head] = _copying(torch.linalg.eigvals(writes @ reads))
            hits = sum(int(((reads[s:s + block] @ writes).argmax(-1) == tokens[s:s + block]).sum())
                       for s in range(0, vocab, block))
            out["frac_copy_argmax"][layer, head] = hits / vocab
    return out
