-- One saved analysis by name (parameter 1).
SELECT name, description, parameters, sql FROM saved_queries WHERE name = ?
