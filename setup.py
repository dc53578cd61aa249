"""Package discovery (the rest of the metadata is in pyproject.toml)."""

from setuptools import find_packages, setup

setup(packages=find_packages(include=["quanta_db", "quanta_db.*", "cli", "cli.*"])
      + ["quanta_db.migrations", "quanta_db.queries"])
