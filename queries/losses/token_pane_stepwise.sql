-- name: token_pane_stepwise
-- description: A token pane (doc_id, pos, value): each token's loss at a step minus its loss at the model's previous ingested step (nats).
-- parameters: corpus_name, model_name, step_number
SELECT doc_id, pos, diff_nats AS value
FROM stepwise_difference
WHERE corpus = corpus_name AND model = model_name AND step = step_number
