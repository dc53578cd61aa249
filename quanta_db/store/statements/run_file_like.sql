SELECT path FROM files WHERE table_name = ? AND run_id = ? AND path LIKE ?
