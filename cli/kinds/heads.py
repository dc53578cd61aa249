"""CLI of the heads kind: ingest heads."""

from quanta_db.cli.params import job_command
from quanta_db.results.heads.params import HeadParams

INGEST = [job_command("heads", HeadParams, "quanta_db.results.heads.job:ingest_heads",
                      plan="quanta_db.results.heads.job:heads_plan")]
REPORT: list = []
