-- name: sae_vs_baselines
-- description: The SAEs and dictionary baselines (PCA, ICA, NMF) of one model hook side by side on one corpus: explained variance, CE loss score, L0 (for baselines: codes above l0_threshold × the token's largest), dead fraction and the 95th percentile of decoder-pair cosines (ready for export latex).
-- parameters: model_name, hook, corpus_name
SELECT s.sae,
    CASE WHEN s.architecture IN ('pca', 'ica', 'nmf') THEN 'baseline' ELSE 'sae' END AS kind,
    s.architecture, s.step, s.d_sae, m.n_tokens, m.explained_variance, m.ce_loss_score, m.l0,
    m.dead_fraction, m.dec_cos_p95
FROM saes AS s
JOIN sae_metrics AS m USING (sae)
WHERE s.model = model_name AND s.hook_name = hook AND m.corpus = corpus_name
ORDER BY kind DESC, s.step, s.architecture, s.d_sae, s.sae
