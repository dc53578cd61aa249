"""Quanta discovery (Michaud et al.): clusterings of low-loss tokens by the cosine similarity of
their loss gradients, the similarity matrix and tokens behind each, and the cluster viewer."""

from quanta_db.kinds import Report, ResultKind

KIND = ResultKind(
    "quanta",
    jobs={"ingest_clusters": "quanta_db.results.quanta.job", "ingest_recluster": "quanta_db.results.quanta.job"},
    tables="quanta_db.results.quanta.tables",
    commands="quanta_db.cli.kinds.quanta",
    reports={"clusters": Report("quanta_db.results.quanta.viewer:served", run_job="clusters")},
    queries="quanta",
)
