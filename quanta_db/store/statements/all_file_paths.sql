SELECT path FROM files
