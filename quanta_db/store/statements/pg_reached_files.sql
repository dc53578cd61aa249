-- The store-relative paths of the committed files of one table (%(table)s) a statement may read,
-- of those committed after snapshot %(after)s, in one state (the files placeholder: the files table's rows as DuckLake inlines them, text as
-- UTF-8 bytes, from pg_inlined_rows.sql). The placeholders that follow are filled by
-- postgres_metadata.py from fixed forms only: a cheap test of the keys' bytes that every file the
-- conditions keep passes, then the conditions on each file's keys (k, parsed as JSON).
-- MATERIALIZED: the test of bytes first (PostgreSQL would order the conditions before it).
WITH candidates AS MATERIALIZED (
    SELECT path, keys FROM ({files}) AS f
    WHERE table_name = convert_to(%(table)s, 'UTF8') AND begin_snapshot > %(after)s
      AND (keys IS NULL OR ({prefilter}))
)
SELECT coalesce(array_agg(convert_from(path, 'UTF8') ORDER BY path), '{{}}')
FROM (SELECT path, convert_from(keys, 'UTF8')::jsonb AS k FROM candidates) AS f
WHERE {conditions}
