-- name: vocabulary_frequency
-- description: How often each vocabulary token occurs in each corpus, with its text and share of the corpus.
SELECT
    t.corpus,
    t.token_id,
    v.token,
    count(*) AS n,
    count(*) / sum(count(*)) OVER (PARTITION BY t.corpus) AS share,
    count(DISTINCT t.doc_id) AS n_docs
FROM tokens AS t
JOIN corpora AS c USING (corpus)
LEFT JOIN vocab AS v ON v.tokenizer = c.tokenizer AND v.token_id = t.token_id
GROUP BY t.corpus, t.token_id, v.token
ORDER BY t.corpus, n DESC, t.token_id
