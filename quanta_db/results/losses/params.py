"""Parameters of ``ingest losses`` (see :mod:`quanta_db.params`)."""

from __future__ import annotations

from dataclasses import dataclass

from quanta_db.params import BatchSize, Device, Force, JobParams, Progress, StageOnly, param, shard_rule
from quanta_db.runtime.device import DTYPES


@dataclass(frozen=True)
class LossParams(JobParams, BatchSize, Device, Force, StageOnly, Progress):
    """Per-token losses (nats) of a model at one or more checkpoints over a corpus.

    Identity of each checkpoint's run: model name, source, step, revision, corpus, dtype, document part
    (``shard``: [p, d] for documents with doc_id % d == p, or None for all)."""

    source: str = param(flag="--model", help="Hub name, save_pretrained folder, or folder of stepN/ folders.")
    corpus: str = param(help="Corpus to score (ingested with the model's tokenizer).")
    name: str | None = param(None, nonblank=True, identity=False,
                             help="Model name in the store [default: last part of the source].")
    steps: tuple[int, ...] | str | None = param(None, text="steps", identity=False,
                                                help="Comma-separated training steps, or 'all' (Pythia's 154 checkpoints).")
    revisions: tuple[str, ...] = param((), flag="--revision", multiple=True, identity=False,
                                       help="Hub revision(s) instead of --steps (repeatable).")
    dtype: str = param("float32", choices=DTYPES, help="Model dtype.")
    shard: tuple[int, int] | None = param(None, text="shard", rule=shard_rule,
                                          help="i/n: this process takes shard i of the split into n (units: "
                                               "checkpoints × document parts; see --plan).")
    tokenizer: str | None = param(None, identity=False,
                                  help="Tokenizer to check the corpus against [default: the model's own].")
    compile_model: bool = param(False, flag="--compile", identity=False,
                                help="torch.compile the model on CUDA (ignored on CPU, where it does not help).")
