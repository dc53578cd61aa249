-- Committed runs that wrote rows but no longer own any table file (artifacts aside).
SELECT run_id
FROM runs
WHERE status = 'committed' AND rows_written > 0
  AND run_id NOT IN (SELECT DISTINCT run_id FROM files WHERE table_name <> ?)
