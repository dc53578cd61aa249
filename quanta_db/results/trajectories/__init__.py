"""Loss trajectories: joint PCA / sparse PCA / hybrid over models x checkpoints, essential dynamics."""

from quanta_db.kinds import Report, ResultKind

KIND = ResultKind(
    "trajectories",
    jobs={"ingest_trajectories": "quanta_db.results.trajectories.job"},
    tables="quanta_db.results.trajectories.tables",
    commands="quanta_db.cli.kinds.trajectories",
    reports={"trajectories": Report("quanta_db.results.trajectories.report:served", run_job="trajectories")},
    queries="trajectories",
)
