-- name: trajectory_score_curves
-- description: Per fit, model and component, the score trajectory over checkpoints (steps, raw and smoothed scores, in step order).
SELECT fit, model, component,
    list(step ORDER BY step) AS steps,
    list(score ORDER BY step) AS scores,
    list(score_smoothed ORDER BY step) AS scores_smoothed
FROM trajectory_scores
GROUP BY fit, model, component
ORDER BY fit, model, component
