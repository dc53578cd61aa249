SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'
