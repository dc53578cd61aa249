-- name: loss_curve
-- description: Mean per-token loss (nats) per model, corpus and step: the learning curve of each model on each corpus.
SELECT l.model, l.corpus, l.step, count(*) AS n_tokens, avg(l.loss_nats) AS mean_loss_nats
FROM token_losses AS l
GROUP BY ALL
ORDER BY l.model, l.corpus, l.step
