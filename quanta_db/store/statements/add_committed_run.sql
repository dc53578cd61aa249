INSERT INTO runs (run_id, kind, params, params_hash, code_version, host, device, started_at, ended_at,
                  rows_written, status, dropped, inputs)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'committed', ?, ?)
