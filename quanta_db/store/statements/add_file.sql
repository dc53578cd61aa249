INSERT INTO files (run_id, table_name, path, partition, rows, bytes, committed_at, keys)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
