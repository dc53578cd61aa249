-- name: quanta_candidates
-- description: The tokens `ingest clusters` picks: loss below threshold (nats) at one model step on one corpus, minus tokens where exclude_filter is true, in canonical order; every skip_every-th, then the first max_tokens. idx is the row of the similarity matrix.
-- parameters: model_name, step_num, corpus_name, threshold := 0.1, exclude_filter := NULL, skip_every := 50, max_tokens := 10000
SELECT (row_number() OVER (ORDER BY canonical_idx) - 1)::INTEGER AS idx, corpus, doc_id, pos, canonical_idx, token, loss_nats
FROM (
    SELECT *, row_number() OVER (ORDER BY canonical_idx) - 1 AS candidate
    FROM low_loss_tokens(model_name, step_num, threshold := threshold, exclude_filter := exclude_filter)
    WHERE corpus = corpus_name
)
WHERE candidate % skip_every = 0
ORDER BY canonical_idx
LIMIT max_tokens
