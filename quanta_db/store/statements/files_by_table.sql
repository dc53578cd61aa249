SELECT table_name, count(*) AS files, sum(rows) AS rows, sum(bytes) AS bytes
FROM files
GROUP BY table_name
