SELECT path, keys, rows FROM files WHERE table_name = ? ORDER BY path
