-- name: features_with_token
-- description: Features whose top examples on a corpus activate on a given token string, with how many of their top examples do.
-- parameters: sae_name, token_text
SELECT e.sae, e.corpus, e.feature, count(*) AS n_examples, max(e.activation) AS max_activation
FROM feature_examples AS e
JOIN tokens AS t USING (corpus, doc_id, pos)
JOIN corpora AS c USING (corpus)
JOIN vocab AS v ON v.tokenizer = c.tokenizer AND v.token_id = t.token_id
WHERE e.sae = sae_name AND e.kind = 'top' AND v.token = token_text
GROUP BY e.sae, e.corpus, e.feature
ORDER BY n_examples DESC, max_activation DESC
