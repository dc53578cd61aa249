-- The committed files of one table (2nd parameter) a statement may read, as paths under the
-- store's folder (1st parameter). The conditions placeholder is filled by reach.py from fixed
-- forms only: the key's JSON path and the constants come after as parameters.
SELECT coalesce(list(? || path ORDER BY path), [])
FROM files
WHERE table_name = ? AND (keys IS NULL OR ({conditions}))
