-- The applied migrations and the saved analyses of one state (the placeholders: their rows, from
-- pg_inlined_rows.sql), as two JSON arrays of objects: one round trip.
SELECT (SELECT coalesce(json_agg(m ORDER BY m.version), '[]') FROM ({migrations}) AS m),
       (SELECT coalesce(json_agg(s ORDER BY s.name), '[]') FROM ({saved}) AS s)
