"""Parameters of ``ingest heads`` (see :mod:`quanta_db.params`)."""

from __future__ import annotations

from dataclasses import dataclass

from quanta_db.params import BatchSize, Device, Force, JobParams, Progress, StageOnly, param, shard_rule


@dataclass(frozen=True)
class HeadParams(JobParams, BatchSize, Device, Force, StageOnly, Progress):
    """Per-token direct logit attribution and mover scores of every head, and per-head induction / OV scores.

    Identity: model and step as resolved, the vocabulary range as used, and the parameters below (the
    shard only when split: documents with doc_id % n == i; shard 0 also computes the per-head scores)."""

    model: str = param(identity=False, help="A model the store knows (by name), or a hub name or local folder.")
    corpus: str = param(help="Corpus whose tokens the per-token metrics cover.")
    name: str | None = param(None, nonblank=True, identity=False,
                             help="Name of the model in the store [default: as ingest losses names it].")
    step: int | None = param(None, identity=False, help="Checkpoint step (needed when the model has several).")
    max_docs: int | None = param(None, min=1, help="Only the first N documents [default: all].")
    induction_length: int = param(50, min=2, help="Random tokens per half of the repeated sequences of the "
                                  "induction / detector scores.")
    induction_seqs: int = param(8, min=1, cli=False, help="Repeated random sequences of the induction scores.")
    vocab_range: tuple[int, int] | None = param(None, text="int_pair", identity=False,
                                                help="LOW,HIGH token ids the random sequences draw from "
                                                     "[default: the whole vocabulary].")
    seed: int = param(0, help="Seed of the random sequences.")
    shard: tuple[int, int] | None = param(None, text="shard", identity=False, rule=shard_rule,
                                          help="i/n: this process takes the documents with doc_id % n == i "
                                               "(shard 0 also the per-head scores).")
