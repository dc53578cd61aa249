-- The committed runs of one split (their parameters record it under "split", unhashed).
SELECT run_id FROM runs
WHERE status = 'committed' AND json_extract_string(params, '$.split.id') = ?
ORDER BY run_id
