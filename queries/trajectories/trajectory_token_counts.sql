-- name: trajectory_token_counts
-- description: Per token of a corpus, in how many of the given (model@step) rows it has a loss; a trajectory fit keeps the tokens present in all of them.
-- parameters: corpus_name, row_keys
SELECT doc_id, pos, count(*) AS n_rows
FROM token_losses
WHERE corpus = corpus_name AND list_contains(row_keys, model || '@' || CAST(step AS VARCHAR))
GROUP BY doc_id, pos
