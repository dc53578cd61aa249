-- name: trajectory_top_tokens
-- description: The tokens loading most (by |loading|) on one component of a fit, with the text of their preceding context and the token itself.
-- parameters: fit_id, component_id, n_tokens := 20, context_tokens := 20
WITH top AS (
    SELECT corpus, doc_id, pos, loading
    FROM trajectory_loadings
    WHERE fit = fit_id AND component = component_id
    ORDER BY abs(loading) DESC, doc_id, pos
    LIMIT n_tokens
)
SELECT top.corpus, top.doc_id, top.pos, top.loading,
    string_agg(cv.token, '' ORDER BY ct.pos) AS context,
    av.token AS token
FROM top
JOIN corpora AS k ON k.corpus = top.corpus
JOIN tokens AS ans ON ans.corpus = top.corpus AND ans.doc_id = top.doc_id AND ans.pos = top.pos
LEFT JOIN vocab AS av ON av.tokenizer = k.tokenizer AND av.token_id = ans.token_id
LEFT JOIN tokens AS ct ON ct.corpus = top.corpus AND ct.doc_id = top.doc_id AND ct.pos < top.pos
    AND ct.pos >= top.pos - context_tokens
LEFT JOIN vocab AS cv ON cv.tokenizer = k.tokenizer AND cv.token_id = ct.token_id
GROUP BY top.corpus, top.doc_id, top.pos, top.loading, av.token
ORDER BY abs(top.loading) DESC, top.doc_id, top.pos
