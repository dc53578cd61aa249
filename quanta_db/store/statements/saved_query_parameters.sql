SELECT name, parameters FROM saved_queries
