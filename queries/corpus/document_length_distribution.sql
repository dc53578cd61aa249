-- name: document_length_distribution
-- description: Document lengths in tokens per corpus and subset: quantiles, and how many hit the truncation limit.
SELECT
    d.corpus,
    coalesce(d.subset, '(none)') AS subset,
    count(*) AS n_docs,
    min(d.n_tokens) AS min_tokens,
    quantile_cont(d.n_tokens, 0.1) AS p10_tokens,
    median(d.n_tokens) AS median_tokens,
    quantile_cont(d.n_tokens, 0.9) AS p90_tokens,
    max(d.n_tokens) AS max_tokens,
    count(*) FILTER (WHERE d.n_tokens = c.max_tokens) AS n_truncated,
    count(*) FILTER (WHERE d.n_tokens = 0) AS n_empty
FROM documents AS d
JOIN corpora AS c USING (corpus)
GROUP BY ALL
ORDER BY d.corpus, subset
