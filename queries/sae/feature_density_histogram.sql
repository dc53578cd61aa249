-- name: feature_density_histogram
-- description: Features per log10(density) bin of width 0.5, per SAE and corpus (dead features in their own row, log10_density NULL).
SELECT sae, corpus,
    CASE WHEN dead THEN NULL ELSE floor(log10(density) * 2) / 2 END AS log10_density,
    count(*) AS n_features
FROM sae_features
GROUP BY ALL
ORDER BY sae, corpus, log10_density NULLS FIRST
