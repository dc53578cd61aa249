-- The columns of the lake's catalog table ? (schema main), in order: name, type, default
-- (NULL, or the text 'NULL', for none), whether it may be NULL.
SELECT column_name, data_type, column_default, is_nullable
FROM duckdb_columns()
WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ?
ORDER BY column_index
