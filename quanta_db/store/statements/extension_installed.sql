SELECT install_path, extension_name FROM duckdb_extensions() WHERE extension_name = ? OR ? = ANY(aliases)
