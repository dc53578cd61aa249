"""Parameters of ``ingest filters`` (see :mod:`quanta_db.params`)."""

from __future__ import annotations

from dataclasses import dataclass

from quanta_db.params import Force, JobParams, Progress, param


@dataclass(frozen=True)
class FilterParams(JobParams, Force, Progress):
    """Boolean token filters of a corpus (present trigram, induction bigram)."""

    corpus: str = param(help="Corpus to mark.")
    filter: str = param(flag="--kind", choices=("trigram", "bigram", "induction"),
                      help="trigram: the trigram ending here occurred earlier; bigram (= induction): the bigram did.")
