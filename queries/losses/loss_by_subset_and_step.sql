-- name: loss_by_subset_and_step
-- description: Mean, median and spread of per-token loss (nats) per model, step, corpus and subset.
SELECT
    l.model, l.step, l.corpus, coalesce(d.subset, '(none)') AS subset,
    count(*) AS n_tokens,
    avg(l.loss_nats) AS mean_loss_nats,
    median(l.loss_nats) AS median_loss_nats,
    stddev_samp(l.loss_nats) AS std_loss_nats
FROM token_losses AS l
JOIN documents AS d USING (corpus, doc_id)
GROUP BY ALL
ORDER BY l.model, l.corpus, subset, l.step
