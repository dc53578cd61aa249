-- name: prompting_difference
-- description: Per aligned token, few-shot minus zero-shot loss (nats) for each model and step (DM mathematics).
-- The few-shot side joins its alignment first (materialized): left to the optimizer, DuckDB 1.5
-- joined the two loss scans on model and step alone, a product that took 2 minutes on the demo.
WITH few AS MATERIALIZED (
    SELECT f.model, f.step, a.corpus AS few_shot_corpus, a.ref_corpus, a.ref_doc_id, a.ref_pos,
        f.loss_nats AS few_shot_loss_nats
    FROM token_alignments AS a
    JOIN token_losses AS f ON f.corpus = a.corpus AND f.doc_id = a.doc_id AND f.pos = a.pos
)
SELECT few.model, few.step, few.few_shot_corpus, few.ref_corpus AS zero_shot_corpus,
    d.subset AS category, few.ref_doc_id AS problem_id, few.ref_pos AS pos,
    few.few_shot_loss_nats, z.loss_nats AS zero_shot_loss_nats,
    few.few_shot_loss_nats - z.loss_nats AS diff_nats
FROM few
JOIN token_losses AS z
    ON z.corpus = few.ref_corpus AND z.doc_id = few.ref_doc_id AND z.pos = few.ref_pos
    AND z.model = few.model AND z.step = few.step
JOIN documents AS d ON d.corpus = few.ref_corpus AND d.doc_id = few.ref_doc_id
