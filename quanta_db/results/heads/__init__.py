"""Attention-head metrics: per-token DLA and mover scores, per-head induction and OV-copying scores."""

from quanta_db.kinds import ResultKind

KIND = ResultKind(
    "heads",
    jobs={"ingest_heads": "quanta_db.results.heads.job"},
    tables="quanta_db.results.heads.tables",
    commands="quanta_db.cli.kinds.heads",
    queries="heads",
)
