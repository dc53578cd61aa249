"""Tiny Pythia-architecture models (GPT-NeoX configs) that the project trains itself.

They are saved with ``save_pretrained`` as ``<out>/step<N>/`` folders, tokenizer included,
so every job loads them through the same ``from_pretrained`` path as a hub model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

# Shapes of the real Pythia models (hidden, layers, heads, MLP), as in their hub config.json
# files; vocabulary 50304 (padded), rotary on 25% of each head, parallel residual.
PYTHIA_SHAPES = {
    "pythia-70m": (512, 6, 8, 2048),
    "pythia-160m": (768, 12, 12, 3072),
    "pythia-410m": (1024, 24, 16, 4096),
    "pythia-1.4b": (2048, 24, 16, 8192),
}


def gpt_neox_config(vocab_size: int, d_model: int = 64, n_layers: int = 2, n_heads: int = 4,
                    d_mlp: int | None = None, n_ctx: int = 512):
    """A GPT-NeoX config with Pythia's choices (rotary_pct 0.25, parallel residual, untied)."""
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=vocab_size, hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
        intermediate_size=d_mlp or 4 * d_model, max_position_embeddings=n_ctx, rotary_pct=0.25,
        use_parallel_residual=True, tie_word_embeddings=False, bos_token_id=0, eos_token_id=0,
        attn_implementation="sdpa",
    )


def pythia_config(shape: str, vocab_size: int = 50304, n_ctx: int = 2048):
    d_model, n_layers, n_heads, d_mlp = PYTHIA_SHAPES[shape]
    return gpt_neox_config(vocab_size, d_model, n_layers, n_heads, d_mlp, n_ctx)


def random_model(config, seed: int = 0):
    from transformers import GPTNeoXForCausalLM

    torch.manual_seed(seed)
    return GPTNeoXForCausalLM(config).eval()


def train_checkpoints(config, sequences: list[np.ndarray], out_dir, save_steps: list[int], tokenizer_dir=None,
                      seq_len: int = 128, batch_size: int = 16, lr: float = 3e-3, seed: int = 0) -> Path:
    """Train on random windows of ``sequences`` with AdamW; save a checkpoint at each step in
    ``save_steps``, each with ``training.json`` (seed, hyperparameters, library versions)."""
    from transformers import AutoTokenizer

    from quanta_db.environment import library_versions

    out_dir = Path(out_dir)
    recipe = {"seed": seed, "seq_len": seq_len, "batch_size": batch_size, "lr": lr, "optimizer": "AdamW",
              "weight_decay": 0.01, "libraries": library_versions()}
    model = random_model(config, seed).train()
    rng = np.random.default_rng(seed)
    stream = np.concatenate([s for s in sequences if len(s)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir)) if tokenizer_dir else None
    for step in range(max(save_steps) + 1):
        if step in save_steps:
            target = out_dir / f"step{step}"
            model.save_pretrained(target)
            if tokenizer is not None:
                tokenizer.save_pretrained(target)
            (target / "training.json").write_text(json.dumps({**recipe, "step": step}, indent=1, sort_keys=True))
        if step == max(save_steps):
            break
        starts = rng.integers(0, len(stream) - seq_len - 1, size=batch_size)
        batch = torch.from_numpy(np.stack([stream[s:s + seq_len] for s in starts]).astype(np.int64))
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)
    return out_dir
