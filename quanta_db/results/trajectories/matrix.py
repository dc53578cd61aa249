"""The joint loss matrix: rows (model, step) in order, columns the tokens every row has.

Which tokens every row has is one SQL aggregate over ``token_losses`` (the saved query
``trajectory_token_counts``); the matrix is then filled one (model, step) Parquet partition at a
time, each token placed by binary search in the sorted column keys — no pivot of the whole table
in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as ds

from quanta_db.errors import InputError
from quanta_db.params import ParameterError
from quanta_db.store.store import Store


@dataclass
class LossMatrix:
    values: np.ndarray  # [n_rows, n_tokens] float32, loss in nats
    rows: list[tuple[str, int]]  # (model, step) per row
    doc_id: np.ndarray  # per column
    pos: np.ndarray
    n_dropped: int  # tokens some row lacks
    n_outside_subset: int  # tokens of the rows outside --tokens


def token_keys(doc_id, pos) -> np.ndarray:
    """One int64 per token: doc_id in the high 32 bits, pos in the low ones (sorts like (doc_id, pos))."""
    return (np.asarray(doc_id, dtype=np.int64) << 32) | np.asarray(pos, dtype=np.int64)


def matrix_rows(store: Store, models: list[str], corpus: str, steps: list[int] | None) -> list[tuple[str, int]]:
    """(model, step) rows in order: models as given, each model's steps ascending — ``steps``
    when given (each must have losses on ``corpus``), else every step with losses there."""
    if len(set(models)) < 2:
        raise ParameterError("models", "must name at least two models for a loss trajectory fit")
    if len(set(models)) != len(models):
        raise ParameterError("models", f"lists a model twice: {', '.join(models)}")
    rows = []
    for model in models:
        known = sorted(int(r["step"]) for r in store.catalog_rows("checkpoints", model=model))
        if not known:
            raise InputError(f"unknown model {model!r} (ingest its losses first)")
        with_losses = [s for s in known if store.has_files("token_losses", model=model, step=s, corpus=corpus)]
        if steps is not None:
            missing = sorted(set(steps) - set(with_losses))
            if missing:
                raise InputError(f"model {model!r} has no losses on {corpus!r} at step(s) "
                                 f"{', '.join(map(str, missing))} (it has {', '.join(map(str, with_losses)) or 'none'})")
            with_losses = sorted(set(steps))
        if not with_losses:
            raise InputError(f"model {model!r} has no losses on corpus {corpus!r}")
        rows += [(model, step) for step in with_losses]
    return rows


def _subset_keys(store: Store, tokens_sql: str, corpus: str) -> np.ndarray:
    table = store.query_arrow(tokens_sql)
    if not {"doc_id", "pos"} <= set(table.column_names):
        raise ParameterError("tokens", "must be a query returning doc_id and pos columns (and optionally corpus)")
    if "corpus" in table.column_names:
        table = table.filter(pc.equal(table["corpus"], corpus))
    return np.unique(token_keys(table["doc_id"].to_numpy(), table["pos"].to_numpy()))


def fill_row(row: np.ndarray, columns: np.ndarray, table) -> None:
    """Place one (model, step) partition's losses (doc_id, pos, loss_nats) into ``row`` at the
    columns of their tokens (``columns``: sorted token keys); tokens outside the columns are skipped."""
    row_keys = token_keys(table["doc_id"].to_numpy(), table["pos"].to_numpy())
    where = np.searchsorted(columns, row_keys)
    hit = (where < len(columns)) & (columns[np.minimum(where, len(columns) - 1)] == row_keys)
    row[where[hit]] = table["loss_nats"].to_numpy()[hit]


def build_matrix(store: Store, rows: list[tuple[str, int]], corpus: str, tokens_sql: str | None = None) -> LossMatrix:
    """The [rows × tokens] loss matrix of the tokens present in every row (within ``tokens_sql``)."""
    counts = store.query_arrow("SELECT doc_id, pos, n_rows FROM trajectory_token_counts(?, ?)",
                               [corpus, [f"{model}@{step}" for model, step in rows]])
    keys = token_keys(counts["doc_id"].to_numpy(), counts["pos"].to_numpy())
    in_all = counts["n_rows"].to_numpy() == len(rows)
    n_outside = 0
    if tokens_sql is not None:
        inside = np.isin(keys, _subset_keys(store, tokens_sql, corpus))
        n_outside = int((~inside).sum())
        keys, in_all = keys[inside], in_all[inside]
    columns = np.sort(keys[in_all])
    if not len(columns):
        raise InputError(f"no token of {corpus!r} has losses in all {len(rows)} rows"
                         + (" within --tokens" if tokens_sql else ""))
    values = np.empty((len(rows), len(columns)), dtype=np.float32)
    for i, (model, step) in enumerate(rows):
        table = store.read_fact("token_losses", ["doc_id", "pos", "loss_nats"], partition={"model": model, "step": step},
                                where=ds.field("corpus") == corpus)
        fill_row(values[i], columns, table)
    return LossMatrix(values, rows, (columns >> 32).astype(np.int64), (columns & 0xFFFFFFFF).astype(np.int32),
                      int((~in_all).sum()), n_outside)
