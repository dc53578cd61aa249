SELECT params FROM runs WHERE run_id = ?
