import numpy as np
import pytest

from quanta_db.errors import InputError
from quanta_db.results.filters.compute import repeated_ngram
from quanta_db.results.filters.job import ingest_filters


def brute_force(ids, n):
    """Direct definition: the n-gram ending at p appeared ending at some q < p."""
    out = []
    for p in range(len(ids)):
        if p < n - 1:
            out.append(False)
            continue
        gram = tuple(ids[p - n + 1:p + 1])
        out.append(any(tuple(ids[q - n + 1:q + 1]) == gram for q in range(n - 1, p)))
    return out


@pytest.mark.parametrize("n", [2, 3])
def test_repeated_ngram_matches_brute_force(n):
    rng = np.random.default_rng(n)
    for length in (0, 1, 2, 3, 10, 200):
        ids = rng.integers(0, 4, size=length)
        assert repeated_ngram(ids, n).tolist() == brute_force(ids.tolist(), n)


def test_known_example():
    ids = [5, 6, 7, 5, 6, 7, 5, 6, 8]
    assert repeated_ngram(np.array(ids), 2).tolist() == [False, False, False, False, True, True, True, True, False]
    assert repeated_ngram(np.array(ids), 3).tolist() == [False, False, False, False, False, True, True, True, False]


def test_ingest_filters_matches_brute_force_per_document(corpus_store):
    ingest_filters(corpus_store, "toy", "trigram", progress=False)
    ingest_filters(corpus_store, "toy", "induction", progress=False)
    got = corpus_store.query_df(
        "SELECT f.filter, f.doc_id, list(f.value ORDER BY f.pos) AS v, list(t.token_id ORDER BY t.pos) AS ids "
        "FROM token_filters f JOIN tokens t USING (corpus, doc_id, pos) GROUP BY ALL")
    assert set(got["filter"]) == {"trigram", "bigram"}
    assert len(got) == 2 * corpus_store.query_df("SELECT count(*) AS n FROM documents WHERE n_tokens > 0")["n"][0]
    for name, _, values, ids in got.itertuples(index=False):
        assert list(values) == brute_force(list(ids), 3 if name == "trigram" else 2)
    assert ingest_filters(corpus_store, "toy", "trigram", progress=False).skipped
    with pytest.raises(InputError, match="filter must be one of trigram, bigram, induction"):
        ingest_filters(corpus_store, "toy", "fourgram")


def test_short_documents_give_boolean_masks():
    for n in (2, 3):
        mask = repeated_ngram(np.array([7]), n)
        assert mask.dtype == bool and mask.tolist() == [False]
