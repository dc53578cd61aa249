SELECT installed FROM duckdb_extensions() WHERE extension_name = ? OR ? = ANY(aliases)
