"""A TransformerLens HookedTransformer with the same weights as a transformers GPT-NeoX model:
the independent reference for hook names (``run_with_cache``), sae-lens's evals and the head
metrics, used by the tests and the benchmarks (needs ``transformer-lens``: the test extra)."""

from __future__ import annotations


def hooked_transformer(hf_model, tokenizer=None, processed: bool = False):
    """``processed``: weights as ``HookedTransformer.from_pretrained`` leaves them (LayerNorm folded,
    value biases folded, writing weights and unembedding centred)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.neox import convert_neox_weights

    c = hf_model.config
    d_head = c.hidden_size // c.num_attention_heads
    rope = c.rope_parameters
    cfg = HookedTransformerConfig(
        n_layers=c.num_hidden_layers, d_model=c.hidden_size, n_ctx=c.max_position_embeddings, d_head=d_head,
        n_heads=c.num_attention_heads, d_mlp=c.intermediate_size, d_vocab=c.vocab_size, act_fn="gelu",
        normalization_type="LN", positional_embedding_type="rotary",
        rotary_dim=int(d_head * rope["partial_rotary_factor"]), rotary_base=int(rope["rope_theta"]),
        parallel_attn_mlp=c.use_parallel_residual, eps=c.layer_norm_eps, rotary_adjacent_pairs=False,
        original_architecture="GPTNeoXForCausalLM", default_prepend_bos=False, device="cpu",
    )
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    if processed:
        model.load_and_process_state_dict(convert_neox_weights(hf_model.float(), cfg))
    else:
        model.load_state_dict(convert_neox_weights(hf_model.float(), cfg), strict=False)
    return model.eval()
