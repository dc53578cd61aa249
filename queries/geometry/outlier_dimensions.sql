-- name: outlier_dimensions
-- description: The n dimensions of a hook that carry most of its energy (mean square) at one checkpoint, with their statistics and the tokens of largest |activation| (token text and signed activation, largest first).
-- parameters: model_name, step_num, hook_name, n := 10
WITH ranked AS (
    SELECT *, row_number() OVER (PARTITION BY corpus ORDER BY energy_fraction DESC, dim) AS energy_rank
    FROM activation_dimensions
    WHERE model = model_name AND step = step_num AND hook = hook_name
)
SELECT r.corpus, r.energy_rank, r.dim, r.energy_fraction, r.mean, r.std, r.kurtosis, r.max_abs,
    string_agg(coalesce(v.token, '#' || CAST(t.token_id AS VARCHAR)) || ' (' || printf('%.3g', x.activation) || ')',
               ' | ' ORDER BY x.rank) AS top_tokens
FROM ranked AS r
LEFT JOIN activation_top_tokens AS x
    ON x.model = r.model AND x.step = r.step AND x.corpus = r.corpus AND x.hook = r.hook AND x.dim = r.dim
LEFT JOIN tokens AS t ON t.corpus = x.corpus AND t.doc_id = x.doc_id AND t.pos = x.pos
LEFT JOIN corpora AS k ON k.corpus = r.corpus
LEFT JOIN vocab AS v ON v.tokenizer = k.tokenizer AND v.token_id = t.token_id
WHERE r.energy_rank <= n
GROUP BY ALL
ORDER BY r.corpus, r.energy_rank
