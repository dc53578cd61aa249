import numpy as np
import pytest

from quanta_db.errors import InputError
from quanta_db.results.corpus.contexts import ingest_contexts, sample_contexts


def test_contexts_are_slices_of_their_source(corpus_store):
    result = ingest_contexts(corpus_store, "toy", "ctx", per_subset=6, length=20, seed=1)
    assert result.details["n_docs"] == 12
    per_subset = corpus_store.query_df("SELECT subset, count(*) AS n FROM documents WHERE corpus = 'ctx' GROUP BY subset")
    assert sorted(per_subset["n"].tolist()) == [6, 6]
    ctx = corpus_store.query_df(
        "SELECT d.doc_id, d.source_doc_id, d.source_start, list(t.token_id ORDER BY t.pos) AS ids "
        "FROM documents d JOIN tokens t USING (corpus, doc_id) WHERE d.corpus = 'ctx' GROUP BY ALL")
    source = corpus_store.query_df("SELECT doc_id, list(token_id ORDER BY pos) AS ids FROM tokens "
                                   "WHERE corpus = 'toy' GROUP BY doc_id")
    source_ids = {int(d): list(ids) for d, ids in source.itertuples(index=False)}
    starts = set()
    for _, src, start, ids in ctx.itertuples(index=False):
        full = source_ids[int(src)]
        assert list(ids) == full[start:start + 20]
        assert len(ids) == min(20, len(full))
        starts.add(int(start))
    assert len(starts) > 1  # not only document beginnings
    kinds = corpus_store.query_df("SELECT origin, parent_corpus FROM corpora WHERE corpus = 'ctx'")
    assert kinds.values.tolist() == [["contexts", "toy"]]
    assert ingest_contexts(corpus_store, "toy", "ctx", per_subset=6, length=20, seed=1).skipped


def test_sampling_is_seeded_and_in_bounds():
    subsets = np.array(["a", "a", "b", "b", "b"], dtype=object)
    lengths = np.array([100, 5, 1, 50, 30])
    first = sample_contexts(subsets, lengths, 50, 10, seed=3)
    assert first == sample_contexts(subsets, lengths, 50, 10, seed=3)
    assert first != sample_contexts(subsets, lengths, 50, 10, seed=4)
    for doc, start in first:
        assert lengths[doc] >= 2 and 0 <= start and (start + 10 <= lengths[doc] or start == 0)
    assert 2 not in {d for d, _ in first}


def test_unknown_source_corpus(store):
    with pytest.raises(InputError, match="unknown corpus"):
        ingest_contexts(store, "nope", "ctx")
