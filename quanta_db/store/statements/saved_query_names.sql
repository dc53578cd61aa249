SELECT name FROM saved_queries
