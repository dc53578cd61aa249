SELECT table_name FROM duckdb_tables() WHERE database_name = 'legacy' AND schema_name = 'main' ORDER BY table_name
