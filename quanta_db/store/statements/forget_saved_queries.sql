DELETE FROM saved_queries
