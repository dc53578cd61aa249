-- name: feature_top_tokens
-- description: The token strings of each feature's top activating examples on a corpus (one row per feature and example).
-- parameters: sae_name, corpus_name
SELECT e.feature, e.rank, v.token
FROM feature_examples AS e
JOIN tokens AS t USING (corpus, doc_id, pos)
JOIN corpora AS c USING (corpus)
JOIN vocab AS v ON v.tokenizer = c.tokenizer AND v.token_id = t.token_id
WHERE e.sae = sae_name AND e.corpus = corpus_name AND e.kind = 'top'
ORDER BY e.feature, e.rank
