"""Corpora: tokenizers and their vocabularies, documents, tokens with the pile-canonical index,
sampled contexts, and DeepMind-mathematics zero-/few-shot sets aligned token for token."""

from quanta_db.kinds import ResultKind

KIND = ResultKind(
    "corpus",
    jobs={"ingest_corpus": "quanta_db.results.corpus.job", "ingest_contexts": "quanta_db.results.corpus.contexts",
          "ingest_dm_math": "quanta_db.results.corpus.dm_math"},
    tables="quanta_db.results.corpus.tables",
    commands="quanta_db.cli.kinds.corpus",
    queries="corpus",
)
