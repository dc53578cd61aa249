"""Parameters of ``ingest sae`` (see :mod:`quanta_db.params`)."""

from __future__ import annotations

from dataclasses import dataclass

from quanta_db.params import BatchSize, Device, Force, JobParams, Progress, StageOnly, param, shard_rule
from quanta_db.runtime.device import DTYPES


@dataclass(frozen=True)
class SaeParams(JobParams, BatchSize, Device, Force, StageOnly, Progress):
    """Per-feature statistics, top and activation-band examples, logit effects and metrics of an SAE (sae-lens).

    Identity: the SAE's name and config hash, model and step as resolved, and the parameters below."""

    sae: str = param(identity=False, help="A folder saved by sae-lens, or a sae-lens release (with --sae-id).")
    corpus: str = param(help="Corpus whose tokens the SAE reads.")
    model: str = param(identity=False, help="A model the store knows (by name), or a hub name or local folder.")
    step: int | None = param(None, identity=False, help="Checkpoint step of the model (needed when it has several).")
    sae_id: str | None = param(None, identity=False, help="The SAE's id within a sae-lens release.")
    name: str | None = param(None, nonblank=True, identity=False,
                             help="Name of the SAE in the store [default: the folder name, or RELEASE/ID].")
    n_tokens: int | None = param(None, min=1, help="Use the first N tokens of the corpus [default: all].")
    top_k: int = param(20, min=1, help="Top examples kept per feature.")
    dtype: str = param("float32", choices=DTYPES, help="Model and SAE dtype (statistics accumulate in float32/float64).")
    ce_tokens: int = param(20_000, min=0, help="CE-loss metrics (reconstruction spliced into the forward pass) on "
                           "the first documents of the corpus, whole, until they hold at least this many tokens.")
    seed: int = param(0, help="Seed of the activation-band sampling.")
    shard: tuple[int, int] | None = param(None, text="shard", identity=False, rule=shard_rule,
                                          help="i/n: this process streams the documents at positions p with "
                                               "p % n == i; `commit --split` merges the shards' statistics.")
