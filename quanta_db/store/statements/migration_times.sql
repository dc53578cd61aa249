SELECT version, applied_at FROM schema_migrations
