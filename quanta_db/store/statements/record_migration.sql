INSERT INTO schema_migrations VALUES (?, ?, ?, now()::TIMESTAMP)
