-- name: prompting_difference
-- description: Per aligned token, few-shot minus zero-shot loss (nats) for each model and step (DM mathematics).
SELECT f.model, f.step, a.corpus AS few_shot_corpus, a.ref_corpus AS zero_shot_corpus,
    d.subset AS category, a.ref_doc_id AS problem_id, a.ref_pos AS pos,
    f.loss_nats AS few_shot_loss_nats, z.loss_nats AS zero_shot_loss_nats,
    f.loss_nats - z.loss_nats AS diff_nats
FROM token_alignments AS a
JOIN token_losses AS f ON f.corpus = a.corpus AND f.doc_id = a.doc_id AND f.pos = a.pos
JOIN token_losses AS z
    ON z.corpus = a.ref_corpus AND z.doc_id = a.ref_doc_id AND z.pos = a.ref_pos
    AND z.model = f.model AND z.step = f.step
JOIN documents AS d ON d.corpus = a.ref_corpus AND d.doc_id = a.ref_doc_id
