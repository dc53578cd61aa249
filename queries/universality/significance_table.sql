-- name: significance_table
-- description: The paper's significance table for one metric and baseline: a row per SAE (layer) pair and subject (all pairs or a category) with the paired value, the null mean and the p-value (newest metrics run of each matching; ready for export latex).
-- parameters: metric_name, baseline_name := 'random_selection'
WITH pairs AS (SELECT DISTINCT matching, sae_a, sae_b FROM feature_matches),
newest AS (
    SELECT r.*
    FROM metric_results AS r
    JOIN runs USING (run_id)
    WHERE r.metric = metric_name AND r.baseline = baseline_name
    QUALIFY row_number() OVER (PARTITION BY r.matching, r.subject ORDER BY runs.ended_at DESC, r.run_id DESC) = 1
)
SELECT p.sae_a, a.layer AS layer_a, p.sae_b, b.layer AS layer_b, n.subject,
    n.value AS paired, n.null_mean, n.p_value, n.n_pairs
FROM newest AS n
JOIN pairs AS p USING (matching)
JOIN saes AS a ON a.sae = p.sae_a
JOIN saes AS b ON b.sae = p.sae_b
ORDER BY n.subject = 'all' DESC, n.subject, a.model, a.layer, b.model, b.layer
