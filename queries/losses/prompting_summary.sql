-- name: prompting_summary
-- description: Mean few-shot minus zero-shot loss (nats) per model and step over all aligned DM-mathematics tokens; negative means in-context examples help.
SELECT model, step, few_shot_corpus, count(*) AS n_tokens,
    avg(zero_shot_loss_nats) AS zero_shot_loss_nats, avg(few_shot_loss_nats) AS few_shot_loss_nats,
    avg(diff_nats) AS mean_diff_nats
FROM prompting_difference
GROUP BY ALL
ORDER BY model, few_shot_corpus, step
