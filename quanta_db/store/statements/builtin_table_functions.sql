SELECT DISTINCT lower(function_name) FROM duckdb_functions() WHERE function_type = 'table'
