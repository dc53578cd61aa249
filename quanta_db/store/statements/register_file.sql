CALL ducklake_add_data_files(current_database(), ?, ?, schema => 'tables')
