"""Training a small SAE with sae-lens's own training classes, for the demo and for tests.

Activations at the hook are collected once from the given token sequences; a sae-lens
``StandardTrainingSAE`` is trained on shuffled minibatches of them with Adam (its own
``training_forward_pass``: MSE plus the L1 sparsity penalty), then saved with
``save_inference_model`` so it loads through ``SAE.load_from_disk`` like any user's SAE.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from quanta_db.runtime.activations import batch_activations


@torch.no_grad()
def collect_activations(model, sequences: list[np.ndarray], hook_name: str, max_tokens: int) -> torch.Tensor:
    """[tokens, d_in] activations at ``hook_name`` of the first ``max_tokens`` tokens."""
    out, total = [], 0
    for start in range(0, len(sequences), 8):
        chosen = [s for s in sequences[start:start + 8] if len(s)]
        if not chosen:
            continue
        out.append(batch_activations(model, chosen, [hook_name], "cpu")[hook_name].float())
        total += len(out[-1])
        if total >= max_tokens:
            break
    return torch.cat(out)[:max_tokens]


def train_sae(model, sequences: list[np.ndarray], hook_name: str, model_name: str, out_dir, d_sae: int,
              steps: int = 400, batch: int = 256, lr: float = 3e-3, l1_coefficient: float = 2.0,
              max_tokens: int = 50_000, seed: int = 0) -> Path:
    """Train a standard SAE on ``model``'s activations at ``hook_name``; returns the saved folder."""
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.sae import SAEMetadata, TrainStepInput

    torch.manual_seed(seed)
    acts = collect_activations(model, sequences, hook_name, max_tokens)
    config = StandardTrainingSAEConfig(d_in=acts.shape[1], d_sae=d_sae, l1_coefficient=l1_coefficient,
                                       metadata=SAEMetadata(hook_name=hook_name, model_name=model_name))
    sae = StandardTrainingSAE(config)
    optimizer = torch.optim.Adam(sae.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    for step in range(steps):
        rows = torch.from_numpy(rng.integers(0, len(acts), size=batch))
        output = sae.training_forward_pass(TrainStepInput(
            sae_in=acts[rows], coefficients={"l1": l1_coefficient}, dead_neuron_mask=None, n_training_steps=step,
            is_logging_step=False))
        optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        optimizer.step()
    out_dir = Path(out_dir)
    sae.save_inference_model(out_dir)
    return out_dir
