-- name: token_pane_loss
-- description: A token pane (doc_id, pos, value): each token's loss (nats) under one model checkpoint.
-- parameters: corpus_name, model_name, step_number
SELECT doc_id, pos, loss_nats AS value
FROM token_losses
WHERE corpus = corpus_name AND model = model_name AND step = step_number
