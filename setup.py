"""Package discovery (the rest of the metadata is in pyproject.toml)."""

from setuptools import find_packages, setup

# The repository's top-level cli/ installs as quanta_db.cli (package-dir in pyproject.toml), so the
# wheel holds one top-level package.
setup(packages=find_packages(include=["quanta_db", "quanta_db.*"])
      + ["quanta_db.cli"] + [f"quanta_db.{name}" for name in find_packages(include=["cli.*"])]
      + ["quanta_db.migrations", "quanta_db.queries"])
