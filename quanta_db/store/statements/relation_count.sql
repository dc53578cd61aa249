SELECT count(*)
FROM (SELECT view_name AS n FROM duckdb_views()
      WHERE NOT internal AND database_name = current_database() AND schema_name = 'main'
      UNION ALL SELECT table_name FROM duckdb_tables()
      WHERE database_name = current_database() AND schema_name = 'main')
WHERE n = ?
