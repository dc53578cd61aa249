SELECT name, sha256 FROM saved_queries
