-- The lake has no keys: the one row of a key is replaced by deleting it first.
DELETE FROM store_info WHERE key = 'root';
INSERT INTO store_info VALUES ('root', ?)
