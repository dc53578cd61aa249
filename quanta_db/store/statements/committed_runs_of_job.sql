SELECT run_id, params FROM runs WHERE kind = ? AND status = 'committed' ORDER BY ended_at
