SELECT column_name FROM duckdb_columns()
WHERE database_name = 'legacy' AND schema_name = 'main' AND table_name = ? AND data_type = 'DOUBLE'
ORDER BY column_index
