SELECT run_id, kind, status, rows_written, ended_at, dropped
FROM runs
ORDER BY ended_at DESC
LIMIT ?
