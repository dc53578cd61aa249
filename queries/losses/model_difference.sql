-- name: model_difference
-- description: Per token and step, the loss of model_a minus the loss of model_b (nats), on corpora both were run on.
-- parameters: model_a, model_b
SELECT a.step, a.corpus, a.doc_id, a.pos, a.loss_nats AS loss_a_nats, b.loss_nats AS loss_b_nats,
    a.loss_nats - b.loss_nats AS diff_nats
FROM token_losses AS a
JOIN token_losses AS b USING (step, corpus, doc_id, pos)
WHERE a.model = model_a AND b.model = model_b
