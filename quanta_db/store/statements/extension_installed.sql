SELECT installed, install_path FROM duckdb_extensions() WHERE extension_name = ? OR ? = ANY(aliases)
