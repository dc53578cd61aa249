"""CLI of the losses kind: ingest losses."""

from quanta_db.cli.params import job_command
from quanta_db.results.losses.params import LossParams

INGEST = [job_command("losses", LossParams, "quanta_db.results.losses.job:ingest_losses",
                      plan="quanta_db.results.losses.job:loss_plan")]
REPORT: list = []
