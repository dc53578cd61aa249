"""Token-table layout: positions and the pile-canonical index of predictable tokens."""

from __future__ import annotations

import numpy as np


def token_columns(doc_ids: np.ndarray, lengths: np.ndarray, canonical_start: int) -> dict[str, np.ndarray]:
    """Flattened ``doc_id``, ``pos`` and ``canonical_idx`` for documents of the given lengths.

    ``canonical_idx`` numbers the predictable tokens (every token but each document's first)
    consecutively in document order, starting at ``canonical_start``; position 0 gets -1
    (stored as NULL). Empty documents contribute nothing.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    pos = np.arange(total, dtype=np.int64) - starts
    predictable = pos > 0
    canonical = np.where(predictable, canonical_start + np.cumsum(predictable) - 1, -1)
    return {
        "doc_id": np.repeat(np.asarray(doc_ids, dtype=np.int64), lengths),
        "pos": pos.astype(np.int32),
        "canonical_idx": canonical,
    }
