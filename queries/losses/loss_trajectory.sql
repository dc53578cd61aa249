-- name: loss_trajectory
-- description: Per token and model, its losses (nats) over training, ordered by step.
SELECT model, corpus, doc_id, pos,
    list(step ORDER BY step) AS steps,
    list(loss_nats ORDER BY step) AS losses_nats
FROM token_losses
GROUP BY model, corpus, doc_id, pos
