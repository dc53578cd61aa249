"""CLI of the filters kind: ingest filters."""

from quanta_db.cli.params import job_command
from quanta_db.results.filters.params import FilterParams

INGEST = [job_command("filters", FilterParams, "quanta_db.results.filters.job:ingest_filters")]
REPORT: list = []
