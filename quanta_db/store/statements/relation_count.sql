SELECT count(*)
FROM (SELECT view_name AS n FROM duckdb_views() WHERE NOT internal
      UNION ALL SELECT table_name FROM duckdb_tables())
WHERE n = ?
