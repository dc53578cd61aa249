SELECT count(*) FROM files WHERE false
