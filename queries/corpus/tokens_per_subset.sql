-- name: tokens_per_subset
-- description: Documents, tokens and predictable tokens per corpus and subset (pile_set_name).
SELECT
    d.corpus,
    coalesce(d.subset, '(none)') AS subset,
    count(*) AS n_docs,
    sum(d.n_tokens)::BIGINT AS n_tokens,
    sum(greatest(d.n_tokens - 1, 0))::BIGINT AS n_predictable,
    avg(d.n_tokens) AS mean_tokens_per_doc
FROM documents AS d
GROUP BY ALL
ORDER BY d.corpus, subset
