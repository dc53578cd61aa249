SELECT path FROM files WHERE table_name = ? ORDER BY path
