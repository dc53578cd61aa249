-- /api/runs: every run, oldest first.
SELECT * FROM runs ORDER BY started_at
