-- name: pair_summary
-- description: Per matching (one SAE pair and method): pairs kept, unique A features, mean and median correlation, many-to-1 counts.
SELECT m.matching, any_value(m.method) AS method, m.sae_a, m.sae_b,
    count(*) AS pairs_kept,
    count(DISTINCT m.feature_a) AS unique_a_features,
    avg(m.corr) AS mean_corr,
    median(m.corr) AS median_corr,
    count(*) FILTER (WHERE m.n_many > 1) AS b_features_sharing_a,
    count(DISTINCT m.feature_a) FILTER (WHERE m.n_many > 1) AS a_features_many_to_1,
    max(m.n_many) AS max_many
FROM feature_matches AS m
GROUP BY m.matching, m.sae_a, m.sae_b
ORDER BY m.sae_a, m.sae_b, m.matching
