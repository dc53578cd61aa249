-- Home page: the 50 most recent runs.
SELECT run_id, kind, status, started_at, ended_at, rows_written, params
FROM runs
ORDER BY started_at DESC
LIMIT 50
