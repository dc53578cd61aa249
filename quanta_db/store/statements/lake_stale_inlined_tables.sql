-- The catalog tables (schema main) of the newest snapshot that have rows inlined in the metadata,
-- each with whether any of them are inlined under another schema version than that snapshot's.
-- DuckLake reads such rows with the lake's schema as of their version, which it loads anew
-- (30-40 ms) in every connection: see lake.rebase_catalog_tables. {metadata}: the metadata
-- schema, quoted.
WITH newest AS (
    SELECT schema_version FROM {metadata}.ducklake_snapshot
    WHERE snapshot_id = (SELECT max(snapshot_id) FROM {metadata}.ducklake_snapshot)
)
SELECT t.table_name, bool_or(i.schema_version <> (SELECT schema_version FROM newest)) AS stale
FROM {metadata}.ducklake_table AS t
    JOIN {metadata}.ducklake_schema AS s USING (schema_id)
    JOIN {metadata}.ducklake_inlined_data_tables AS i USING (table_id)
WHERE s.schema_name = 'main' AND s.end_snapshot IS NULL AND t.end_snapshot IS NULL
GROUP BY t.table_name
ORDER BY t.table_name
