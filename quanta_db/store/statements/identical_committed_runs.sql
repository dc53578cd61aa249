SELECT run_id FROM runs WHERE params_hash = ? AND status = 'committed' ORDER BY ended_at
