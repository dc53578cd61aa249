"""Parameters of ``ingest clusters`` and ``ingest recluster`` (see :mod:`quanta_db.params`)."""

from __future__ import annotations

from dataclasses import dataclass

from quanta_db.params import Device, Force, JobParams, Progress, StageOnly, param, shard_rule
from quanta_db.runtime.device import DTYPES

# Parameters the exact path never differentiates: embeddings, unembedding, layer norms.
DEFAULT_EXCLUDE = ("embed_in", "embed_out", "lm_head", "layernorm")


def _positive_gib(value) -> str | None:
    return None if value is None or value > 0 else f"must be a positive number of GiB, got {value}"


@dataclass(frozen=True)
class ClusterParams(JobParams, Device, Force, StageOnly, Progress):
    """Quanta: cluster low-loss tokens by the cosine similarity of their loss gradients.

    Identity: every parameter but device and grad_memory_gb; the threshold is hashed in nats
    (``loss_below_nats``) whatever its unit."""

    model: str = param(help="Model name in the store (its losses must be ingested).")
    step: int = param(help="Training step of the model.")
    corpus: str = param(help="Corpus whose tokens are clustered.")
    loss_below: float = param(0.1, identity=False, help="Keep tokens with loss below this.")
    loss_unit: str = param("nats", choices=("nats", "bits"), identity=False, help="Unit of --loss-below.")
    exclude_filter: str | None = param(None, help="Drop tokens where this filter is true (e.g. trigram).")
    n_tokens: int = param(10000, min=2, help="Tokens to cluster.")
    skip: int = param(50, min=1, help="Take every skip-th candidate.")
    n_clusters: int = param(400, min=2, help="Clusters.")
    n_init: int = param(30, min=1, help="k-means restarts.")
    seed: int = param(0, help="Seed of the sketch and of k-means.")
    sketch: int | None = param(None, min=16, help="CountSketch the gradients to this many dimensions.")
    grad_dtype: str = param("float32", choices=DTYPES,
                            help="Storage of gradient blocks (products accumulate in float32).")
    grad_memory_gb: float | None = param(None, identity=False, rule=_positive_gib,
                                         help="Memory for gradient blocks [default: 70% of free GPU, 4 GB on CPU].")
    exclude_params: tuple[str, ...] = param(DEFAULT_EXCLUDE, cli=False,
                                            help="Parameter names (substrings) whose gradients are left out.")
    shard: tuple[int, int] | None = param(None, text="shard", identity=False, rule=shard_rule,
                                          help="i/n (with --sketch): this process computes the sketched gradients of "
                                               "the selected tokens at positions p % n == i; `commit --split` "
                                               "clusters them all.")

    def check(self) -> None:
        if self.shard is not None and self.sketch is None:
            from quanta_db.params import ParameterError

            raise ParameterError("shard", "needs --sketch DIM: the exact similarity needs every pair of full-size "
                                 "gradients, so it runs on one device (docs/scaleout.md)")

    @property
    def loss_below_nats(self) -> float:
        import math

        return self.loss_below * math.log(2) if self.loss_unit == "bits" else self.loss_below


@dataclass(frozen=True)
class ReclusterParams(JobParams, Force):
    """Recluster the similarity matrix of an earlier clustering run, without recomputing gradients."""

    from_similarity: str = param(help="Clustering run whose similarity matrix is reclustered.")
    n_clusters: int = param(400, min=2, help="Clusters.")
    n_init: int = param(30, min=1, help="k-means restarts.")
    seed: int = param(0, help="Seed of k-means.")
