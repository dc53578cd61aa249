"""Activation geometry: per-dimension statistics, isotropy measures and covariance spectra of a
model's activations at hook points, per checkpoint."""

from quanta_db.kinds import ResultKind

KIND = ResultKind(
    "geometry",
    jobs={"ingest_geometry": "quanta_db.results.geometry.job"},
    tables="quanta_db.results.geometry.tables",
    commands="quanta_db.cli.kinds.geometry",
    queries="geometry",
)
