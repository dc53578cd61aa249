"""CLI of the geometry kind: ingest geometry."""

from quanta_db.cli.params import job_command
from quanta_db.results.geometry.params import GeometryParams

INGEST = [job_command("geometry", GeometryParams, "quanta_db.results.geometry.job:ingest_geometry")]
REPORT: list = []
