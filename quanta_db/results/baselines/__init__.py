"""Dictionary baselines: PCA, ICA and NMF fitted to a hook's activations and registered as SAEs."""

from quanta_db.kinds import ResultKind

KIND = ResultKind(
    "baselines",
    jobs={"ingest_baselines": "quanta_db.results.baselines.job"},
    commands="quanta_db.cli.kinds.baselines",
    queries="baselines",
)
