-- name: anisotropy_over_training
-- description: Isotropy of one hook of a model across its training checkpoints: participation ratio, variance in the top 1/10/100 principal directions and mean cosine between distinct tokens, step by step.
-- parameters: model_name, hook_name
SELECT corpus, step, n_tokens, total_variance, participation_ratio, variance_top1, variance_top10,
    variance_top100, mean_pair_cosine
FROM activation_summary
WHERE model = model_name AND hook = hook_name
ORDER BY corpus, step
