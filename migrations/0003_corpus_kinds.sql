-- Corpora derived from others (sampled contexts, DM-mathematics zero-/few-shot sets) say what
-- they are and where they came from. Also brings the token_losses, token_filters and
-- token_alignments views to existing stores (views are rebuilt after every migrate).

ALTER TABLE corpora ADD COLUMN kind VARCHAR DEFAULT 'text';     -- text | contexts | dm_math_zero_shot | dm_math_few_shot
ALTER TABLE corpora ADD COLUMN parent_corpus VARCHAR;            -- the corpus contexts were cut from, or the aligned twin
ALTER TABLE models ADD COLUMN d_vocab INTEGER;
