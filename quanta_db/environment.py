"""The software a result was computed with, recorded beside the parameters of every run."""

from __future__ import annotations

import functools
import platform
from importlib import metadata

from quanta_db.version import __version__

LIBRARIES = ("torch", "transformers", "tokenizers", "sae-lens", "numpy", "scipy", "scikit-learn", "pandas", "pyarrow",
             "duckdb", "mathematics-dataset")


def library_versions() -> dict[str, str | None]:
    """Installed versions of the libraries results depend on (None: not installed), read from
    package metadata without importing them (once a process: a read takes ~30 ms)."""
    return dict(_library_versions())


@functools.cache
def _library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(), "quanta-db": __version__}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
