-- Nothing is inlined in the schema of the fact tables, so that deleting every row of a
-- registered file ends the file (rather than recording deleted rows still read from it).
CALL lake.set_option('data_inlining_row_limit', 0, schema => 'tables')
