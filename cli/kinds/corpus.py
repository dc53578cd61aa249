"""CLI of the corpus kind: ingest corpus, contexts, dm-math."""

from quanta_db.cli.params import job_command
from quanta_db.results.corpus.params import ContextsParams, CorpusParams, DmMathParams

INGEST = [
    job_command("corpus", CorpusParams, "quanta_db.results.corpus.job:ingest_corpus", create=True),
    job_command("contexts", ContextsParams, "quanta_db.results.corpus.contexts:ingest_contexts"),
    job_command("dm-math", DmMathParams, "quanta_db.results.corpus.dm_math:ingest_dm_math", create=True),
]
REPORT: list = []
