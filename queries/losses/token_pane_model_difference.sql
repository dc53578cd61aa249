-- name: token_pane_model_difference
-- description: A token pane (doc_id, pos, value): each token's loss under model_a minus under model_b at one step (nats).
-- parameters: corpus_name, model_a, model_b, step_number
SELECT a.doc_id, a.pos, a.loss_nats - b.loss_nats AS value
FROM token_losses AS a
JOIN token_losses AS b USING (step, corpus, doc_id, pos)
WHERE a.corpus = corpus_name AND a.model = model_a AND b.model = model_b AND a.step = step_number
