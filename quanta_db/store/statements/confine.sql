-- The fixed part of a user connection's confinement (sandbox.restrict); allowed_paths and
-- memory_limit are set before it, with parameters. Locking the configuration comes last.
SET allowed_directories = [];
SET temp_directory = '';
SET enable_external_access = false;
SET lock_configuration = true;
