SELECT name, description, parameters, sql FROM saved_queries WHERE name = ?
