UPDATE runs SET status = 'superseded' WHERE run_id = ?
