"""The store's settings from environment variables (timeouts and thresholds, in seconds)."""

from __future__ import annotations

import os

from quanta_db.errors import StoreError


def env_seconds(name: str, default: float) -> float:
    """``$name`` as a non-negative number of seconds, ``default`` when unset or empty."""
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return max(0.0, float(raw))
    except ValueError:
        raise StoreError(f"{name}={raw!r} is not a number of seconds") from None
