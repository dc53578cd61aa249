-- Rows written through the lake (the catalog tables') stay in its metadata database rather than
-- in Parquet files of their own: the fact tables' registered files are then the only data files,
-- and user SQL needs to read nothing else.
CALL lake.set_option('data_inlining_row_limit', 1073741824)
