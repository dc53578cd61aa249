-- name: feature_clusters
-- description: For each feature, the quanta clusters its top-activating tokens belong to (tokens of a clustering on the same corpus), most shared first.
SELECT e.sae, e.feature, l.clustering, l.cluster, count(*) AS n_tokens
FROM feature_examples AS e
JOIN cluster_labels AS l USING (corpus, doc_id, pos)
WHERE e.kind = 'top'
GROUP BY e.sae, e.feature, l.clustering, l.cluster
ORDER BY e.sae, e.feature, n_tokens DESC, l.clustering, l.cluster
