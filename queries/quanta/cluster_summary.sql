-- name: cluster_summary
-- description: Per cluster: size, mean loss (nats) of its tokens for the clustered model and step, and its five most common answer tokens.
WITH labelled AS (
    SELECT l.clustering, l.cluster, l.corpus, l.doc_id, l.pos, s.loss_nats, t.token_id, v.token
    FROM cluster_labels AS l
    JOIN clusterings AS c USING (clustering)
    JOIN similarity_tokens AS s
        ON s.similarity_run = c.similarity_run AND s.corpus = l.corpus AND s.doc_id = l.doc_id AND s.pos = l.pos
    JOIN tokens AS t ON t.corpus = l.corpus AND t.doc_id = l.doc_id AND t.pos = l.pos
    JOIN corpora AS k ON k.corpus = l.corpus
    LEFT JOIN vocab AS v ON v.tokenizer = k.tokenizer AND v.token_id = t.token_id
),
answers AS (
    SELECT clustering, cluster, token, count(*) AS n FROM labelled GROUP BY ALL
)
SELECT b.clustering, b.cluster, count(*) AS n_tokens, avg(b.loss_nats) AS mean_loss_nats,
    (SELECT list(a.token ORDER BY a.n DESC, a.token)[1:5] FROM answers AS a
     WHERE a.clustering = b.clustering AND a.cluster = b.cluster) AS top_answer_tokens
FROM labelled AS b
GROUP BY b.clustering, b.cluster
ORDER BY b.clustering, b.cluster
