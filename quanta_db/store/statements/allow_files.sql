-- The paths a user connection may read when they are chosen for its statement (sandbox.restrict
-- with paths; see reach.py), then confine.sql.
SET VARIABLE quanta_allowed_paths = ?::VARCHAR[]
