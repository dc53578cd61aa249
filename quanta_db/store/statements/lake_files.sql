-- Every file the lake's current snapshot reads for one fact table (data and delete files).
SELECT data_file, delete_file FROM ducklake_list_files(current_database(), ?, schema => 'tables')
