-- name: stepwise_difference
-- description: Per token, its loss at each step minus its loss at the previous ingested step of the same model.
SELECT model, corpus, doc_id, pos, prev_step, step, prev_loss_nats, loss_nats, loss_nats - prev_loss_nats AS diff_nats
FROM (
    SELECT model, corpus, doc_id, pos, step, loss_nats,
        lag(step) OVER w AS prev_step,
        lag(loss_nats) OVER w AS prev_loss_nats
    FROM token_losses
    WINDOW w AS (PARTITION BY model, corpus, doc_id, pos ORDER BY step)
)
WHERE prev_step IS NOT NULL
