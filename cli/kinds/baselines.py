"""CLI of the baselines kind: ingest baselines."""

from quanta_db.cli.params import job_command
from quanta_db.results.baselines.params import BaselineParams

INGEST = [job_command("baselines", BaselineParams, "quanta_db.results.baselines.job:ingest_baselines")]
REPORT: list = []
