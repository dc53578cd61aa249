-- name: head_cluster_loss_drop
-- description: Which heads carry the loss drop of each quanta cluster between two checkpoints: per cluster and head, the cluster's mean loss drop (nats, step_a minus step_b) beside the head's mean DLA gain on the same tokens (needs ingest heads at both steps).
-- parameters: model_name, step_a, step_b, clustering_id
WITH tokens AS (
    SELECT l.cluster, l.corpus, l.doc_id, l.pos
    FROM cluster_labels AS l
    WHERE l.clustering = clustering_id
),
drops AS (
    SELECT t.cluster, t.corpus, t.doc_id, t.pos, a.loss_nats - b.loss_nats AS loss_drop_nats
    FROM tokens AS t
    JOIN token_losses AS a ON a.corpus = t.corpus AND a.doc_id = t.doc_id AND a.pos = t.pos
        AND a.model = model_name AND a.step = step_a
    JOIN token_losses AS b ON b.corpus = t.corpus AND b.doc_id = t.doc_id AND b.pos = t.pos
        AND b.model = model_name AND b.step = step_b
)
SELECT d.cluster, ha.layer, ha.head, count(*) AS n_tokens,
    avg(d.loss_drop_nats) AS mean_loss_drop_nats,
    avg(hb.dla - ha.dla) AS mean_dla_gain,
    corr(hb.dla - ha.dla, d.loss_drop_nats) AS corr_dla_gain_loss_drop
FROM drops AS d
JOIN head_token_metrics AS ha ON ha.corpus = d.corpus AND ha.doc_id = d.doc_id AND ha.pos = d.pos
    AND ha.model = model_name AND ha.step = step_a
JOIN head_token_metrics AS hb ON hb.corpus = d.corpus AND hb.doc_id = d.doc_id AND hb.pos = d.pos
    AND hb.model = model_name AND hb.step = step_b AND hb.layer = ha.layer AND hb.head = ha.head
GROUP BY d.cluster, ha.layer, ha.head
ORDER BY d.cluster, mean_dla_gain DESC, ha.layer, ha.head
