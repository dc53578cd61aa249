-- name: dead_features
-- description: Features never active on the tokens an SAE was run on (n_tokens beside each), per SAE and corpus.
SELECT f.sae, s.model, s.step, s.hook_name, f.corpus, f.feature, f.n_tokens, f.encoder_norm, f.decoder_norm
FROM sae_features AS f
JOIN saes AS s USING (sae)
WHERE f.dead
ORDER BY f.sae, f.corpus, f.feature
