import pytest

from quanta_db.errors import InputError
from quanta_db.results.corpus import dm_math_problems as dm_math
from quanta_db.results.corpus.dm_math import ingest_dm_math


@pytest.fixture
def released(tmp_path):
    folder = tmp_path / "dm"
    folder.mkdir()
    (folder / "algebra__linear_1d.txt").write_text("".join(f"Solve {i}*x = {2 * i} for x.\n2\n" for i in range(1, 30)))
    (folder / "arithmetic__add_or_sub.txt").write_text("".join(f"What is {i} + {i}?\n{2 * i}\n" for i in range(40)))
    return folder


def test_released_files_give_aligned_corpora(store, toy_inputs, released):
    result = ingest_dm_math(store, "dm", str(toy_inputs["tokenizer"]), per_category=5, source=released,
                            few_shot_tokens=60)
    assert result.details["n_problems"] == 10
    zero = store.query_df("SELECT doc_id, subset, list(token_id ORDER BY pos) AS ids FROM tokens JOIN documents "
                          "USING (corpus, doc_id) WHERE corpus = 'dm_zero_shot' GROUP BY ALL")
    assert sorted(zero["subset"].unique()) == ["algebra/linear_1d", "arithmetic/add_or_sub"]
    zero_ids = {int(d): list(ids) for d, _, ids in zero.itertuples(index=False)}
    aligned = store.query_df(
        "SELECT a.ref_doc_id, a.ref_pos, f.token_id FROM token_alignments a "
        "JOIN tokens f ON f.corpus = a.corpus AND f.doc_id = a.doc_id AND f.pos = a.pos")
    assert len(aligned) > 0
    for ref_doc, ref_pos, token in aligned.itertuples(index=False):
        assert zero_ids[int(ref_doc)][int(ref_pos)] == token  # each few-shot token is its zero-shot twin
    few_lengths = store.query_df("SELECT max(n_tokens) AS m FROM documents WHERE corpus = 'dm_few_shot'")
    assert few_lengths["m"][0] <= 60
    kinds = store.query_df("SELECT corpus, origin, parent_corpus FROM corpora ORDER BY corpus").values.tolist()
    assert kinds == [["dm_few_shot", "dm_math_few_shot", "dm_zero_shot"], ["dm_zero_shot", "dm_math_zero_shot", "dm_few_shot"]]


def test_bad_released_input(store, toy_inputs, released, tmp_path):
    with pytest.raises(InputError, match="no file for category"):
        ingest_dm_math(store, "dm", str(toy_inputs["tokenizer"]), source=released, categories=["calculus/x"])
    (released / "odd__file.txt").write_text("only a question\n")
    with pytest.raises(InputError, match="odd number of lines"):
        ingest_dm_math(store, "dm", str(toy_inputs["tokenizer"]), source=released)
    with pytest.raises(InputError, match="not a folder"):
        ingest_dm_math(store, "dm", str(toy_inputs["tokenizer"]), source=tmp_path / "missing")


@pytest.mark.slow
def test_generated_problems_are_seeded():
    first, failed = dm_math.generate(2, ["arithmetic/add_or_sub", "algebra/linear_1d"], seed=0)
    again, _ = dm_math.generate(2, ["arithmetic/add_or_sub", "algebra/linear_1d"], seed=0)
    assert first == again and len(first) == 4 and not failed
    assert all(p.question and p.answer for p in first)
    with pytest.raises(InputError, match="unknown DM-mathematics category"):
        dm_math.generate(1, ["nope/nope"], seed=0)
