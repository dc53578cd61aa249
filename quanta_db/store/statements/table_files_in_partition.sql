SELECT path FROM files WHERE table_name = ? AND partition = ? ORDER BY path
