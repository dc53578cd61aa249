-- name: corpus_tokens
-- description: The tokens of one document with their text, position and canonical index.
-- parameters: corpus_name, document_id := 0
SELECT t.corpus, t.doc_id, t.pos, t.token_id, v.token, t.canonical_idx
FROM tokens AS t
JOIN corpora AS c USING (corpus)
LEFT JOIN vocab AS v ON v.tokenizer = c.tokenizer AND v.token_id = t.token_id
WHERE t.corpus = corpus_name AND t.doc_id = document_id
ORDER BY t.pos
