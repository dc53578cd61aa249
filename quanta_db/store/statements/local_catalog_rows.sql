-- The applied migrations and the saved analyses of one state (the placeholders: their rows, from
-- local_inlined_rows.sql), as two lists of structs: one statement, which also binds the files
-- table's rows (a state whose inlined tables lack a column read does not bind).
SELECT (SELECT coalesce(list(struct_pack(version := m.version, name := m.name, sha256 := m.sha256)
                             ORDER BY m.version), []) FROM ({migrations}) AS m),
       (SELECT coalesce(list(struct_pack(name := s.name, parameters := s.parameters, sql := s.sql, sha256 := s.sha256)
                             ORDER BY s.name), []) FROM ({saved}) AS s)
FROM (SELECT count(*) FROM ({files}) AS f WHERE false)
