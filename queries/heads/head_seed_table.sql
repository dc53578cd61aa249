-- name: head_seed_table
-- description: Heads sorted by their mean mover DLA outside the induction mask (the bigram filter by default), with their induction and OV-copying scores (ready for export latex).
-- parameters: model_name, step_number, corpus_name, filter_name := 'bigram'
SELECT m.layer, m.head,
    avg(m.mover_dla) AS mean_mover_dla, avg(m.dla) AS mean_dla, avg(m.mover_attn) AS mean_mover_attn,
    count(*) AS n_tokens,
    any_value(s.induction) AS induction, any_value(s.ov_copy_vocab) AS ov_copy_vocab
FROM head_token_metrics AS m
JOIN token_filters AS f
    ON f.corpus = m.corpus AND f.doc_id = m.doc_id AND f.pos = m.pos AND f.filter = filter_name
LEFT JOIN head_scores AS s ON s.model = m.model AND s.step = m.step AND s.layer = m.layer AND s.head = m.head
WHERE m.model = model_name AND m.step = step_number AND m.corpus = corpus_name AND NOT f.value
GROUP BY m.layer, m.head
ORDER BY mean_mover_dla DESC, m.layer, m.head
