SELECT name, parameters, sql FROM saved_queries WHERE parameters <> '' ORDER BY name
