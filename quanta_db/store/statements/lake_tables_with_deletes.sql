-- Tables of the lake that have delete files (rows the lake dropped from a registered file).
SELECT table_name FROM ducklake_table_info(current_database()) WHERE delete_file_count > 0
