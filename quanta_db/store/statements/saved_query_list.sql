SELECT name, description, parameters, sql FROM saved_queries ORDER BY name
