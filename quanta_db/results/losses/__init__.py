"""Per-token next-token losses of models at training checkpoints."""

from quanta_db.kinds import ResultKind

KIND = ResultKind(
    "losses",
    jobs={"ingest_losses": "quanta_db.results.losses.job"},
    tables="quanta_db.results.losses.tables",
    commands="quanta_db.cli.kinds.losses",
    queries="losses",
)
