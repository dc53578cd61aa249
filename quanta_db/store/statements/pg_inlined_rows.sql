-- The rows of one catalog table's inlined metadata table (the table placeholder, quoted) that
-- snapshot %(snapshot)s shows (DuckLake keeps a row's first and last snapshot), with the columns
-- of the columns placeholder (postgres_metadata.py).
SELECT {columns} FROM {table}
WHERE begin_snapshot <= %(snapshot)s AND (end_snapshot IS NULL OR end_snapshot > %(snapshot)s)
