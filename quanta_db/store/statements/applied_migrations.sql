SELECT version, name, sha256 FROM schema_migrations ORDER BY version
