-- Lineage. Each committed file records the values of its table's per-file key columns (e.g.
-- {"model": "pythia-70m", "step": 512, "corpus": "pile"}), so that replacing an entity finds the
-- files derived from it without reading them; each run records what its commit dropped.
-- In the catalog "kind" now means one thing, the job kind of a run: a corpus's provenance
-- (text, contexts, dm_math_zero_shot, dm_math_few_shot) is its origin.

ALTER TABLE files ADD COLUMN keys JSON;
ALTER TABLE runs ADD COLUMN dropped JSON;
ALTER TABLE corpora RENAME COLUMN kind TO origin;
