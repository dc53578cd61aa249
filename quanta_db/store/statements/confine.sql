-- The fixed part of a user connection's confinement (sandbox.restrict), after
-- allow_committed_files.sql and memory_limit; locking the configuration comes last.
SET allowed_paths = getvariable('quanta_allowed_paths');
RESET VARIABLE quanta_allowed_paths;
SET allowed_directories = [];
SET temp_directory = '';
SET enable_external_access = false;
SET lock_configuration = true;
