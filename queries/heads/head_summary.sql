-- name: head_summary
-- description: Per head, quantiles (0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1) and means of its per-token DLA, mover attention and mover DLA on a corpus — over all tokens, or split by a token filter (e.g. 'bigram', the induction mask).
-- parameters: model_name, step_number, corpus_name, filter_name := NULL
SELECT m.layer, m.head,
    CASE WHEN filter_name IS NULL THEN 'all' WHEN f.value THEN 'in ' || filter_name ELSE 'outside ' || filter_name END AS tokens,
    count(*) AS n_tokens,
    avg(m.dla) AS mean_dla, avg(m.mover_attn) AS mean_mover_attn, avg(m.mover_dla) AS mean_mover_dla,
    quantile_cont(m.dla, [0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1]) AS dla_quantiles,
    quantile_cont(m.mover_attn, [0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1]) AS mover_attn_quantiles,
    quantile_cont(m.mover_dla, [0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1]) AS mover_dla_quantiles
FROM head_token_metrics AS m
LEFT JOIN token_filters AS f
    ON f.corpus = m.corpus AND f.doc_id = m.doc_id AND f.pos = m.pos AND f.filter = filter_name
WHERE m.model = model_name AND m.step = step_number AND m.corpus = corpus_name
    AND (filter_name IS NULL OR f.value IS NOT NULL)
GROUP BY m.layer, m.head, tokens
ORDER BY m.layer, m.head, tokens
