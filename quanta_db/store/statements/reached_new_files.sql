-- The files of one table (4th parameter) that the commits after snapshot ? (2nd) up to ? (3rd)
-- added and a statement may read, as paths under the store's folder (1st parameter), read from
-- the metadata table that holds the files table's inlined rows (the inlined placeholder: see
-- lake.Changes.new_files; each row records the snapshot that inserted it). The conditions
-- placeholder is filled by reach.py as in reached_files.sql.
SELECT coalesce(list(? || path ORDER BY path), [])
FROM {inlined}
WHERE begin_snapshot > ? AND begin_snapshot <= ? AND table_name = ? AND (keys IS NULL OR ({conditions}))
