-- SQL page: each relation with its columns.
SELECT table_name, string_agg(column_name, ', ' ORDER BY ordinal_position) AS columns
FROM information_schema.columns
GROUP BY table_name
ORDER BY table_name
