-- Every saved analysis: its name, its parameters ('' for a view) and its body.
SELECT name, parameters, sql FROM saved_queries ORDER BY name
