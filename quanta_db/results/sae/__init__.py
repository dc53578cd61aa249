"""SAE feature statistics: per-feature stats, examples, logit effects and SAE metrics (sae-lens)."""

from quanta_db.kinds import Report, ResultKind

KIND = ResultKind(
    "sae",
    jobs={"ingest_sae": "quanta_db.results.sae.job"},
    tables="quanta_db.results.sae.tables",
    commands="quanta_db.cli.kinds.sae",
    reports={"features": Report("quanta_db.results.sae.report:served")},
    queries="sae",
)
