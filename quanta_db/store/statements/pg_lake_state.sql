-- One committed state of a lake on PostgreSQL (snapshot %(snapshot)s), read from its DuckLake
-- metadata tables in PostgreSQL's own SQL (the schema placeholder: the metadata schema, quoted; see
-- postgres_metadata.py): when the snapshot was taken (microseconds since the epoch, as text, as
-- lake_latest_snapshot.sql gives it); how many delete files, and data files of the catalog
-- tables, it has (a state with any is read through the lake); the views of the schema main; and
-- for the catalog tables read here, the metadata tables holding their inlined rows (one per schema
-- version of the table) with each one's columns and types; and what the commits after snapshot
-- %(since)s changed (as lake_changes.sql: its entries, whether that snapshot was taken at
-- %(since_taken)s, the table ids of saved_queries and files).
WITH schemas AS (
    SELECT schema_id FROM {schema}.ducklake_schema
    WHERE schema_name = 'main' AND begin_snapshot <= %(snapshot)s
      AND (end_snapshot IS NULL OR end_snapshot > %(snapshot)s)
), catalog_tables AS (
    SELECT table_id, table_name FROM {schema}.ducklake_table
    WHERE schema_id IN (SELECT schema_id FROM schemas) AND begin_snapshot <= %(snapshot)s
      AND (end_snapshot IS NULL OR end_snapshot > %(snapshot)s)
)
SELECT
    (SELECT (extract(epoch FROM snapshot_time) * 1000000)::bigint::text
     FROM {schema}.ducklake_snapshot WHERE snapshot_id = %(snapshot)s) AS taken,
    (SELECT count(*) FROM {schema}.ducklake_delete_file
     WHERE begin_snapshot <= %(snapshot)s AND (end_snapshot IS NULL OR end_snapshot > %(snapshot)s)) AS delete_files,
    (SELECT count(*) FROM {schema}.ducklake_data_file  -- ANY(ARRAY(...)): one scan of the files
     WHERE table_id = ANY(ARRAY(SELECT table_id FROM catalog_tables)) AND begin_snapshot <= %(snapshot)s
       AND (end_snapshot IS NULL OR end_snapshot > %(snapshot)s)) AS catalog_data_files,
    (SELECT coalesce(json_agg(view_name), '[]') FROM {schema}.ducklake_view
     WHERE schema_id IN (SELECT schema_id FROM schemas) AND begin_snapshot <= %(snapshot)s
       AND (end_snapshot IS NULL OR end_snapshot > %(snapshot)s)) AS views,
    (SELECT coalesce(json_agg(json_build_array(t.table_name, i.table_name, (
         SELECT json_agg(json_build_array(a.attname, format_type(a.atttypid, a.atttypmod)))
         FROM pg_attribute AS a
         WHERE a.attrelid = to_regclass(format('%%I.%%I', %(schema_name)s::text, i.table_name))
           AND a.attnum > 0 AND NOT a.attisdropped))), '[]')
     FROM {schema}.ducklake_inlined_data_tables AS i JOIN catalog_tables AS t USING (table_id)
     WHERE t.table_name = ANY(%(tables)s)) AS inlined,
    (SELECT coalesce(string_agg(changes_made, ','), '') FROM {schema}.ducklake_snapshot_changes
     WHERE snapshot_id > %(since)s AND snapshot_id <= %(snapshot)s) AS changes,
    (SELECT count(*) FROM {schema}.ducklake_snapshot WHERE snapshot_id = %(since)s
       AND (extract(epoch FROM snapshot_time) * 1000000)::bigint::text = %(since_taken)s::text) AS same_lake,
    (SELECT json_agg(table_id) FROM catalog_tables WHERE table_name = 'saved_queries') AS saved_queries,
    (SELECT json_agg(table_id) FROM catalog_tables WHERE table_name = 'files') AS files
