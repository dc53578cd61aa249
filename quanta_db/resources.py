"""Where the shipped SQL lives: package data in a wheel, the repository folders in a checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def resource_dir(name: str) -> Path:
    """Directory of the shipped ``migrations`` or ``queries`` SQL files.

    A wheel installs them as ``quanta_db/<name>/``; in a source checkout (or an editable
    install) they are the top-level folders of the repository.
    """
    installed = PACKAGE_DIR / name
    if installed.is_dir():
        return installed
    return PACKAGE_DIR.parent / name


def migrations_dir() -> Path:
    return resource_dir("migrations")


def queries_dir() -> Path:
    return resource_dir("queries")
