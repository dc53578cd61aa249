-- Home page: the saved analyses.
SELECT name, description, parameters FROM saved_queries ORDER BY name
