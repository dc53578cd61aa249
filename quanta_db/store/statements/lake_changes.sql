-- What the commits after snapshot ? (1st parameter) up to snapshot ? (4th) changed, as the lake's
-- metadata records it (DuckLake's ducklake_snapshot_changes: comma-separated "kind:table id"
-- entries); whether the 1st snapshot was taken when the 2nd and 3rd parameters say (id, time as
-- text: a lake made anew at the same place never passes for the old one); the table ids of the
-- catalog's saved_queries and files tables; the tables holding the files table's inlined rows.
-- {metadata}: the metadata schema, quoted.
WITH catalog_tables AS (
    SELECT t.table_id, t.table_name
    FROM {metadata}.ducklake_table AS t JOIN {metadata}.ducklake_schema AS s USING (schema_id)
    WHERE s.schema_name = 'main' AND s.end_snapshot IS NULL AND t.end_snapshot IS NULL
      AND t.table_name IN ('saved_queries', 'files')
)
SELECT (SELECT coalesce(string_agg(c.changes_made, ','), '') FROM {metadata}.ducklake_snapshot_changes AS c
        WHERE c.snapshot_id > ? AND c.snapshot_id <= ?) AS changes,
       (SELECT count(*) FROM {metadata}.ducklake_snapshot AS s
        WHERE s.snapshot_id = ? AND epoch_us(s.snapshot_time)::VARCHAR = ?) AS same_lake,
       (SELECT list(table_id) FROM catalog_tables WHERE table_name = 'saved_queries') AS saved_queries,
       (SELECT list(table_id) FROM catalog_tables WHERE table_name = 'files') AS files,
       (SELECT list(i.table_name ORDER BY i.schema_version) FROM {metadata}.ducklake_inlined_data_tables AS i
        WHERE i.table_id IN (SELECT table_id FROM catalog_tables WHERE table_name = 'files')) AS files_inlined
