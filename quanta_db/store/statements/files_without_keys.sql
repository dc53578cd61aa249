SELECT path, table_name FROM files WHERE keys IS NULL ORDER BY path
