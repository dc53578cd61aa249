"""Feature universality: cross-SAE correlations, matching, and similarity metrics with p-values."""

from quanta_db.kinds import Report, ResultKind

KIND = ResultKind(
    "universality",
    jobs={name: "quanta_db.results.universality.job"
          for name in ("ingest_feature_pairs", "ingest_feature_matches", "ingest_metrics")},
    tables="quanta_db.results.universality.tables",
    commands="quanta_db.cli.kinds.universality",
    reports={"heatmap": Report("quanta_db.results.universality.heatmap:served")},
    queries="universality",
)
