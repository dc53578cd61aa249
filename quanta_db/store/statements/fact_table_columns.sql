SELECT column_name FROM duckdb_columns()
WHERE database_name = current_database() AND schema_name = 'tables' AND table_name = ?
