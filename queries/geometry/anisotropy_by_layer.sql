-- name: anisotropy_by_layer
-- description: Isotropy of every hook of one model checkpoint, layer by layer: participation ratio of the covariance spectrum, variance in the top 1/10/100 principal directions, mean cosine between distinct tokens, and the largest energy share of one dimension.
-- parameters: model_name, step_num
SELECT a.corpus, a.layer, a.hook, a.n_tokens, a.d, a.participation_ratio, a.variance_top1, a.variance_top10,
    a.variance_top100, a.mean_pair_cosine, d.top_energy_fraction
FROM activation_summary AS a
JOIN (
    SELECT model, step, corpus, hook, max(energy_fraction) AS top_energy_fraction
    FROM activation_dimensions
    WHERE model = model_name AND step = step_num
    GROUP BY ALL
) AS d USING (model, step, corpus, hook)
WHERE a.model = model_name AND a.step = step_num
ORDER BY a.corpus, a.layer, a.hook
