-- name: low_loss_tokens
-- description: Tokens a model predicts with loss below a threshold (nats) at one step, excluding tokens where a filter is true (exclude_filter := NULL keeps all), in canonical order.
-- parameters: model_name, step_num, threshold := 0.1, exclude_filter := 'trigram'
SELECT l.model, l.step, l.corpus, l.doc_id, l.pos, t.canonical_idx, t.token_id, v.token, l.loss_nats
FROM token_losses AS l
JOIN tokens AS t USING (corpus, doc_id, pos)
JOIN corpora AS c USING (corpus)
LEFT JOIN vocab AS v ON v.tokenizer = c.tokenizer AND v.token_id = t.token_id
LEFT JOIN token_filters AS f
    ON f.corpus = l.corpus AND f.doc_id = l.doc_id AND f.pos = l.pos AND f.filter = exclude_filter
WHERE l.model = model_name AND l.step = step_num AND l.loss_nats < threshold AND NOT coalesce(f.value, false)
ORDER BY l.corpus, t.canonical_idx
