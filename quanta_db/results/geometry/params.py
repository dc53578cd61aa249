"""Parameters of ``ingest geometry`` (see :mod:`quanta_db.params`)."""

from __future__ import annotations

from dataclasses import dataclass

from quanta_db.params import BatchSize, Device, Force, JobParams, Progress, param


@dataclass(frozen=True)
class GeometryParams(JobParams, BatchSize, Device, Force, Progress):
    """Per-dimension statistics, isotropy measures and covariance spectrum of activations at hooks.

    Identity: model and step as resolved, and the parameters below."""

    model: str = param(identity=False, help="A model the store knows (by name), or a hub name or local folder.")
    hooks: tuple[str, ...] = param(text="names", nonempty=True,
                                   help="Hook names, comma-separated (e.g. blocks.0.hook_resid_post,blocks.1.hook_mlp_out).")
    corpus: str = param(help="Corpus whose tokens run through the model.")
    steps: tuple[int, ...] | None = param(None, text="steps", identity=False,
                                          help="Checkpoint steps, comma-separated [default: every checkpoint].")
    n_tokens: int = param(100_000, min=1, help="Use the first N tokens of the corpus.")
    top_k: int = param(10, min=1, help="Tokens of largest |activation| kept per dimension.")
