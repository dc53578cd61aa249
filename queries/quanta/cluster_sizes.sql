-- name: cluster_sizes
-- description: Tokens per cluster of each clustering (cluster 0 is the largest), with its share of the clustering.
SELECT l.clustering, c.model, c.step, c.corpus, l.cluster, count(*) AS n_tokens,
    count(*) / sum(count(*)) OVER (PARTITION BY l.clustering) AS share
FROM cluster_labels AS l
JOIN clusterings AS c USING (clustering)
GROUP BY l.clustering, c.model, c.step, c.corpus, l.cluster
ORDER BY l.clustering, l.cluster
