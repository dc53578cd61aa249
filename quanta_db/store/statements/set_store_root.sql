INSERT OR REPLACE INTO store_info VALUES ('root', ?)
