"""``ingest dm-math``: aligned zero-shot and few-shot corpora of DeepMind mathematics problems.

- ``<name>_zero_shot``: one document per problem, its question and answer on two lines.
- ``<name>_few_shot``: one document per category, the problems' token ids concatenated with
  the tokenization of a newline between them, up to ``few_shot_tokens``. Concatenating token ids
  (not re-tokenizing the joined text) makes every few-shot token a copy of a zero-shot token:
  ``token_alignments`` links each to its problem and offset, and the saved view
  ``prompting_difference`` subtracts zero-shot from few-shot loss per aligned token.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from quanta_db.errors import InputError
from quanta_db.job import JobResult, committed
from quanta_db.params import job_function
from quanta_db.results.corpus import dm_math_problems as dm_math
from quanta_db.results.corpus.job import (
    prepare_tokenizer,
    stage_corpus_row,
    stage_tokenizer,
    start_corpus_run,
    write_corpus_chunk,
)
from quanta_db.results.corpus.params import DmMathParams
from quanta_db.runtime.tokenizer import encode
from quanta_db.store.store import Store


def _ingest_dm_math(store: Store, params: DmMathParams) -> JobResult:
    """Generate (or read) ``per_category`` problems per category into ``<name>_zero_shot`` / ``_few_shot``."""
    name, tokenizer, per_category, source, seed, few_shot_tokens = (
        params.name, params.tokenizer, params.per_category, params.source, params.seed, params.few_shot_tokens)
    categories = list(params.categories) if params.categories is not None else None
    tok = prepare_tokenizer(store, tokenizer, params.tokenizer_name)
    if source is not None:
        problems, failed = dm_math.read_released(source, per_category, categories, seed), {}
    else:
        problems, failed = dm_math.generate(per_category, categories, seed)
    if not problems:
        raise InputError("no DM-mathematics problems to ingest" + (f" ({len(failed)} categories failed)" if failed else ""))
    zero, few = f"{name}_zero_shot", f"{name}_few_shot"
    origin = str(source) if source else "generated"
    identity = params.identity(tokenizer=str(tokenizer), vocab_hash=tok.vocab_hash, categories=categories,
                               source=origin, problems=[p.text for p in problems])
    run, skipped = start_corpus_run(store, "dm_math", identity, [zero, few], params.force)
    if skipped:
        return skipped
    with run:
        stage_tokenizer(run, tok)
        problem_ids = encode(tok.tokenizer, [p.text for p in problems], None)
        separator = encode(tok.tokenizer, ["\n"], None)[0]
        zero_counts = write_corpus_chunk(run, zero, np.arange(len(problems), dtype=np.int64),
                                         [p.category for p in problems], [p.text for p in problems], problem_ids, 0)
        few_docs = few_shot_documents(problems, problem_ids, separator, few_shot_tokens)
        few_counts = write_corpus_chunk(run, few, np.arange(len(few_docs), dtype=np.int64),
                                        [d["category"] for d in few_docs],
                                        [tok.tokenizer.decode(d["ids"]) for d in few_docs],
                                        [d["ids"] for d in few_docs], 0)
        run.write("token_alignments", alignment_table(few, zero, few_docs))
        for corpus, counts, origin, twin in ((zero, zero_counts, "dm_math_zero_shot", few),
                                             (few, few_counts, "dm_math_few_shot", zero)):
            stage_corpus_row(run, corpus, origin, tok.name, tok.vocab_hash,
                             few_shot_tokens if corpus == few else None, counts, origin=origin, parent_corpus=twin)
        rows = run.commit()
    message = f"dm-math {name!r}: {len(problems)} problems in {len(few_docs)} categories"
    if failed:
        message += f"; {len(failed)} categories could not be generated here: {', '.join(sorted(failed))}"
    return committed(run, rows, message, {"failed": failed, "n_problems": len(problems)})


ingest_dm_math = job_function(DmMathParams, _ingest_dm_math)


def few_shot_documents(problems, problem_ids, separator: list[int], limit: int) -> list[dict]:
    """Per category: concatenated problem ids (separator between), and each token's origin.

    ``origin`` holds (problem index, offset) per token, or (-1, -1) for separator tokens.
    """
    by_category: dict[str, list[int]] = {}
    for index, problem in enumerate(problems):
        by_category.setdefault(problem.category, []).append(index)
    documents = []
    for category, indices in by_category.items():
        ids, origin = [], []
        for index in indices:
            pieces = (separator if ids else []) + list(problem_ids[index])
            if ids and len(ids) + len(pieces) > limit:
                break
            if ids:
                ids += separator
                origin += [(-1, -1)] * len(separator)
            ids += list(problem_ids[index])[: limit - len(ids)]
            origin += [(index, offset) for offset in range(len(ids) - len(origin))]
        documents.append({"category": category, "ids": ids, "origin": origin})
    return documents


def alignment_table(few: str, zero: str, documents: list[dict]) -> pa.Table:
    doc_ids, positions, ref_docs, ref_positions = [], [], [], []
    for doc_id, document in enumerate(documents):
        for pos, (problem, offset) in enumerate(document["origin"]):
            if problem >= 0:
                doc_ids.append(doc_id)
                positions.append(pos)
                ref_docs.append(problem)
                ref_positions.append(offset)
    n = len(doc_ids)
    return pa.table({"corpus": pa.repeat(few, n), "doc_id": pa.array(doc_ids, pa.int64()),
                     "pos": pa.array(positions, pa.int32()), "ref_corpus": pa.repeat(zero, n),
                     "ref_doc_id": pa.array(ref_docs, pa.int64()), "ref_pos": pa.array(ref_positions, pa.int32())})
