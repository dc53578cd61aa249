"""Token filters over one document's (truncated) token ids.

- ``trigram`` (quanta-discovery's "present trigram"): true at position p when p >= 2 and the
  trigram (x[p-2], x[p-1], x[p]) already occurred ending at some earlier position q < p of the
  same document.
- ``bigram`` (alias ``induction``): true at p when p >= 1 and the bigram (x[p-1], x[p]) already
  occurred earlier in the document: the token is predictable by copying what followed an
  earlier occurrence of its predecessor (the induction mask of attention-head analyses).
"""

from __future__ import annotations

import numpy as np

FILTER_ORDERS = {"bigram": 2, "trigram": 3}
ALIASES = {"induction": "bigram"}


def canonical_filter(name: str) -> str:
    return ALIASES.get(name, name)


def repeated_ngram(ids: np.ndarray, n: int) -> np.ndarray:
    """Boolean per position: the n-gram ending here occurred ending at an earlier position."""
    ids = np.asarray(ids)
    value = np.zeros(len(ids), dtype=bool)
    if len(ids) < n:
        return value
    grams = np.stack([ids[i:len(ids) - n + 1 + i] for i in range(n)], axis=1)
    _, first, inverse = np.unique(grams, axis=0, return_index=True, return_inverse=True)
    value[n - 1:] = first[inverse.reshape(-1)] < np.arange(len(grams))
    return value
