-- name: head_dla_ratio
-- description: Per head, how much of its direct logit attribution comes through attention on earlier copies of the next token: Σ mover_dla / Σ dla over a corpus's tokens.
-- parameters: model_name, step_number, corpus_name
SELECT layer, head, count(*) AS n_tokens, sum(mover_dla) AS total_mover_dla, sum(dla) AS total_dla,
    sum(mover_dla) / nullif(sum(dla), 0) AS dla_ratio
FROM head_token_metrics
WHERE model = model_name AND step = step_number AND corpus = corpus_name
GROUP BY layer, head
ORDER BY layer, head
