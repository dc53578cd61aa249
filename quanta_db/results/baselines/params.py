"""Parameters of ``ingest baselines`` (see :mod:`quanta_db.params`)."""

from __future__ import annotations

from dataclasses import dataclass

from quanta_db.params import BatchSize, Device, Force, JobParams, Progress, param
from quanta_db.results.baselines.dictionary import ARCHITECTURES, DEFAULT_L0_THRESHOLD


@dataclass(frozen=True)
class BaselineParams(JobParams, BatchSize, Device, Force, Progress):
    """A PCA, ICA or NMF dictionary fitted to a hook's activations, registered as an SAE and run
    through `ingest sae` on the same corpus.

    Identity: the dictionary's name and config hash, model and step as resolved, and the parameters
    below (those of the `ingest sae` run that registers it)."""

    model: str = param(help="A model the store knows (by name), or a hub name or local folder.")
    hook: str = param(help="Hook name whose activations are decomposed, e.g. blocks.1.hook_resid_post.")
    corpus: str = param(help="Corpus whose first --n-tokens tokens are fitted (and all of whose tokens are scored).")
    method: str = param(choices=ARCHITECTURES, help="pca, ica (FastICA, unit-variance whitening) or nmf (on the "
                        "activations shifted by their per-dimension minimum).")
    step: int | None = param(None, help="Checkpoint step of the model (needed when it has several).")
    n_components: int | None = param(None, min=1, help="Dictionary size K [default: the hook's width].")
    n_tokens: int = param(100_000, min=1, help="Fit on the first N tokens of the corpus.")
    seed: int = param(0, help="Seed of ICA / NMF (and of the activation-band sampling).")
    l0_threshold: float = param(DEFAULT_L0_THRESHOLD, min=0, max=1,
                                help="A code counts as active when |f_i| > this × the token's largest |f_j| (L0, "
                                     "density, dead features).")
    eval_tokens: int | None = param(None, min=1, help="Score the dictionary (ingest sae) on the first N tokens "
                                    "of the corpus [default: all].")
    name: str | None = param(None, nonblank=True, help="Name in the store [default: MODEL@STEP-HOOK-METHODK].")
