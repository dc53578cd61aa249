-- Integrity. A run records the run ids it read from (the corpus run a loss run used, the loss
-- run a clustering used, ...), so its commit can refuse inputs that were replaced meanwhile.
-- store_info holds facts about the store itself: its absolute root when the views were last
-- built (views name absolute Parquet paths, so any DuckDB client can read them from anywhere;
-- a moved store has its views rebuilt on the next open).

ALTER TABLE runs ADD COLUMN inputs JSON;
CREATE TABLE store_info (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
