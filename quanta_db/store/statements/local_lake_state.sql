-- One committed state of a local lake (snapshot $snapshot), read from its metadata file attached
-- as plain tables (the metadata placeholder: the metadata schema, quoted; see local_metadata.py): how many delete
-- files, and data files of the catalog tables, it has (a state with any is read through the lake);
-- the views of the schema main; and for the catalog tables named in $tables, the metadata
-- tables holding their inlined rows (one per schema version of the table), as [table, holder] pairs.
WITH schemas AS (
    SELECT schema_id FROM {metadata}.ducklake_schema
    WHERE schema_name = 'main' AND begin_snapshot <= $snapshot
      AND (end_snapshot IS NULL OR end_snapshot > $snapshot)
), catalog_tables AS (
    SELECT table_id, table_name FROM {metadata}.ducklake_table
    WHERE schema_id IN (SELECT schema_id FROM schemas) AND begin_snapshot <= $snapshot
      AND (end_snapshot IS NULL OR end_snapshot > $snapshot)
)
SELECT
    (SELECT count(*) FROM {metadata}.ducklake_delete_file
     WHERE begin_snapshot <= $snapshot AND (end_snapshot IS NULL OR end_snapshot > $snapshot)) AS delete_files,
    (SELECT count(*) FROM {metadata}.ducklake_data_file
     WHERE table_id IN (SELECT table_id FROM catalog_tables) AND begin_snapshot <= $snapshot
       AND (end_snapshot IS NULL OR end_snapshot > $snapshot)) AS catalog_data_files,
    (SELECT coalesce(list(view_name), []) FROM {metadata}.ducklake_view
     WHERE schema_id IN (SELECT schema_id FROM schemas) AND begin_snapshot <= $snapshot
       AND (end_snapshot IS NULL OR end_snapshot > $snapshot)) AS views,
    (SELECT coalesce(list([t.table_name, i.table_name]), [])
     FROM {metadata}.ducklake_inlined_data_tables AS i JOIN catalog_tables AS t USING (table_id)
     WHERE list_contains($tables, t.table_name)) AS inlined
