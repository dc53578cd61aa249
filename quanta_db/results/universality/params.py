"""Parameters of ``ingest feature-pairs``, ``feature-matches`` and ``metrics`` (see :mod:`quanta_db.params`),
and the names every part of the universality kind shares: metrics, matching methods, null baselines."""

from __future__ import annotations

from dataclasses import dataclass

from quanta_db.params import Device, Force, JobParams, Progress, StageOnly, param, shard_rule

# metrics.METRICS maps each name to its function (a test holds the two equal)
METRIC_NAMES = ("svcca", "svcca_reference", "rsa", "cka", "procrustes", "mknn")
DEFAULT_METRICS = ("svcca", "rsa", "cka", "procrustes", "mknn")
MATCH_METHODS = ("argmax", "one-to-one", "greedy")
BASELINES = ("random_selection", "shuffled_pairing")


@dataclass(frozen=True)
class FeaturePairParams(JobParams, Device, Force, StageOnly, Progress):
    """Pearson correlation of every feature of SAE A with every feature of SAE B over the same tokens.

    Identity: the parameters below and both SAEs' config hashes."""

    sae_a: str = param(help="A registered SAE (see `ingest sae`).")
    sae_b: str = param(help="Another registered SAE, on a model with the same tokenizer.")
    corpus: str = param(help="Corpus whose tokens both models read.")
    n_tokens: int | None = param(100_000, min=1, help="First N tokens (None: all).")
    top_k: int = param(5, min=1, help="Partners kept per feature.")
    shard: tuple[int, int] | None = param(None, text="shard", identity=False, rule=shard_rule,
                                          help="i/n: this process correlates the documents at positions p with "
                                               "p % n == i; `commit --split` adds the shards' sums up.")


@dataclass(frozen=True)
class FeatureMatchParams(JobParams, Force):
    """Match the features of a pairing one to one, many to one, or greedily."""

    pairing: str = param(help="A feature-pairs run id.")
    method: str = param(choices=MATCH_METHODS, help="argmax: each B feature to its best A feature; one-to-one: the "
                        "best assignment; greedy: repeatedly the best remaining pair.")
    min_corr: float | None = param(None, min=-1, max=1, help="Drop pairs below this correlation.")
    max_many: int | None = param(None, min=1, help="Drop A features matched more often than this.")
    exclude_dead: bool = param(False, help="Never match features dead on the pairing's corpus.")
    token_filter: bool = param(False, help="Keep pairs whose top tokens share a token that is not only punctuation, "
                               "whitespace or special.")


@dataclass(frozen=True)
class MetricParams(JobParams, Device, Force):
    """Similarity of the matched decoder spaces, with permutation p-values (random selection, shuffled pairing).

    Identity: the parameters below, the subspaces by their content (not the file's name)."""

    matching: str = param(help="A feature-matches run id.")
    metrics: tuple[str, ...] = param(DEFAULT_METRICS, text="names", choices=METRIC_NAMES, nonempty=True,
                                     help="Comma-separated.")
    permutations: int = param(1000, min=1, help="Null samples per baseline.")
    seed: int = param(0, help="Seed of the permutations.")
    subspaces: str | None = param(None, identity=False, help="JSON or YAML file: category -> keywords; metrics also "
                                  "per category (example: quanta_db/results/universality/categories_example.json).")
