-- name: sae_comparison
-- description: One row per SAE and corpus with its size, sparsity, reconstruction and CE-loss metrics (ready for export latex).
SELECT s.sae, s.model, s.step, s.hook_name, s.architecture, s.d_sae, m.corpus, m.n_tokens,
    m.l0, m.mse, m.explained_variance, m.cos_sim, m.ce_loss_score, m.dead_fraction, m.gini, m.dec_cos_max
FROM sae_metrics AS m
JOIN saes AS s USING (sae)
ORDER BY s.model, s.step, s.hook_name, s.sae, m.corpus
