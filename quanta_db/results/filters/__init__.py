"""Boolean token filters: present trigram and the induction (repeated bigram) mask."""

from quanta_db.kinds import ResultKind

KIND = ResultKind(
    "filters",
    jobs={"ingest_filters": "quanta_db.results.filters.job"},
    tables="quanta_db.results.filters.tables",
    commands="quanta_db.cli.kinds.filters",
)
