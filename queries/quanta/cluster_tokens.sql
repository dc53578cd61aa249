-- name: cluster_tokens
-- description: The tokens of one cluster with the text of their preceding context (up to context_tokens tokens) and the answer token.
-- parameters: clustering_id, cluster_id, context_tokens := 30
SELECT l.corpus, l.doc_id, l.pos,
    string_agg(cv.token, '' ORDER BY ct.pos) AS context,
    av.token AS answer
FROM cluster_labels AS l
JOIN corpora AS k ON k.corpus = l.corpus
JOIN tokens AS ans ON ans.corpus = l.corpus AND ans.doc_id = l.doc_id AND ans.pos = l.pos
LEFT JOIN vocab AS av ON av.tokenizer = k.tokenizer AND av.token_id = ans.token_id
JOIN tokens AS ct ON ct.corpus = l.corpus AND ct.doc_id = l.doc_id AND ct.pos < l.pos AND ct.pos >= l.pos - context_tokens
LEFT JOIN vocab AS cv ON cv.tokenizer = k.tokenizer AND cv.token_id = ct.token_id
WHERE l.clustering = clustering_id AND l.cluster = cluster_id
GROUP BY l.corpus, l.doc_id, l.pos, av.token
ORDER BY l.corpus, l.doc_id, l.pos
