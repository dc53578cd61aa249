-- name: trajectory_loading_labels
-- description: A component's loadings joined with what else the store says of the same tokens: their quanta cluster (any clustering) and the SAE features that have them among their top examples.
-- parameters: fit_id, component_id
SELECT l.corpus, l.doc_id, l.pos, l.loading,
    c.clustering, c.cluster,
    e.sae, e.feature, e.activation
FROM trajectory_loadings AS l
LEFT JOIN cluster_labels AS c ON c.corpus = l.corpus AND c.doc_id = l.doc_id AND c.pos = l.pos
LEFT JOIN feature_examples AS e ON e.corpus = l.corpus AND e.doc_id = l.doc_id AND e.pos = l.pos AND e.kind = 'top'
WHERE l.fit = fit_id AND l.component = component_id AND (c.cluster IS NOT NULL OR e.feature IS NOT NULL)
ORDER BY abs(l.loading) DESC, l.doc_id, l.pos
