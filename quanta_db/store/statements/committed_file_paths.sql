-- Every committed file as one list of absolute paths ($1: the store's folder, with a trailing
-- slash): built in SQL, as Python path objects cost 10 µs a file.
SELECT coalesce(list($1 || path), []) FROM files
