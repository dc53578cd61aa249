-- name: token_pane_prompting
-- description: A token pane (doc_id, pos, value) on a zero-shot corpus: few-shot minus zero-shot loss of each aligned token (nats) for one model checkpoint.
-- parameters: corpus_name, model_name, step_number
SELECT problem_id AS doc_id, pos, diff_nats AS value
FROM prompting_difference
WHERE zero_shot_corpus = corpus_name AND model = model_name AND step = step_number
