SELECT count(*) FROM ducklake_options(current_database()) WHERE option_name = 'data_inlining_row_limit'
