-- Home page: each model's checkpoints.
SELECT model, count(*) AS n_checkpoints, min(step) AS first_step, max(step) AS last_step
FROM checkpoints
GROUP BY model
ORDER BY model
