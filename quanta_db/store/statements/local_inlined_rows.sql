-- The rows of one catalog table's inlined metadata table (the table placeholder, quoted) that
-- the snapshot of the snapshot placeholder (an integer, written in by local_metadata.py) shows, with the columns of
-- the columns placeholder (DuckLake keeps a row's first and last snapshot).
SELECT {columns} FROM {table}
WHERE begin_snapshot <= {snapshot} AND (end_snapshot IS NULL OR end_snapshot > {snapshot})
