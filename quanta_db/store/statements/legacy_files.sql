SELECT table_name, path FROM files ORDER BY path
