-- name: layer_heatmap
-- description: Layer-by-layer heat-map data for one metric and baseline over all matched pairs: a cell per (model A layer, model B layer) with the paired value, null mean and p-value (newest metrics run; the best-scoring matching where one layer pair has several).
-- parameters: metric_name, baseline_name := 'random_selection'
WITH pairs AS (SELECT DISTINCT matching, sae_a, sae_b FROM feature_matches),
newest AS (
    SELECT r.*
    FROM metric_results AS r
    JOIN runs USING (run_id)
    WHERE r.metric = metric_name AND r.baseline = baseline_name AND r.subject = 'all'
    QUALIFY row_number() OVER (PARTITION BY r.matching ORDER BY runs.ended_at DESC, r.run_id DESC) = 1
)
SELECT a.model AS model_a, a.layer AS layer_a, b.model AS model_b, b.layer AS layer_b,
    max(n.value) AS value,
    arg_max(n.null_mean, n.value) AS null_mean,
    arg_max(n.p_value, n.value) AS p_value,
    arg_max(n.n_pairs, n.value) AS n_pairs
FROM newest AS n
JOIN pairs AS p USING (matching)
JOIN saes AS a ON a.sae = p.sae_a
JOIN saes AS b ON b.sae = p.sae_b
GROUP BY a.model, a.layer, b.model, b.layer
ORDER BY model_a, layer_a, model_b, layer_b
