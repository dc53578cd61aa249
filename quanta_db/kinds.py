"""Result kinds, each declared once.

Every package under ``quanta_db.results`` declares, in its ``__init__.py``, one :class:`ResultKind`
named ``KIND``: its tables, its jobs (the Python API), its CLI module, its served reports and its
saved analyses. Everything that lists kinds reads this registry — ``quanta_db.<job>`` and
``quanta_db.__all__``, the ``ingest`` / ``report`` command groups, ``serve``'s report routes, the
table registry and the saved-query installer — so a new kind is a new package and nothing else
(docs/development.md). Declarations import nothing heavy; what they name is imported on use.

Reference: SAELens's ``registry.py`` (SAE classes registered by name) and SAEBench's one folder
per evaluation.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from quanta_db.errors import InputError, QuantaError

RESULTS_PACKAGE = "quanta_db.results"


@dataclass(frozen=True)
class Report:
    """A report ``serve`` renders at ``/reports/<name>/<ident>``.

    ``renderer`` is ``"module:function"``, called as ``function(store, ident, options)`` (``options``:
    the request's query parameters) and returning ``(media type, body bytes)``. With ``run_job``,
    ``ident`` is the id of a run of that job kind: the report never changes and is linked from the
    run's row on the home page; otherwise it follows commits.
    """

    renderer: str
    run_job: str | None = None

    def render(self, store, ident: str, options: dict) -> tuple[str, bytes]:
        return resolve(self.renderer)(store, ident, options)


def resolve(reference: str):
    """The function a ``"module:function"`` reference names, its module imported now."""
    module, _, function = reference.partition(":")
    return getattr(importlib.import_module(module), function)


@dataclass(frozen=True)
class ResultKind:
    """What quanta-db knows about one result kind (``KIND`` in its package's ``__init__.py``).

    - ``jobs``: public job function name → module defining it (``quanta_db.<name>``);
    - ``tables``: module with ``FACT_TABLES`` / ``CATALOG_TABLES`` (None: no tables);
    - ``commands``: CLI module with ``INGEST`` and ``REPORT`` click command lists;
    - ``reports``: served report name → :class:`Report`;
    - ``queries``: folder of saved analyses (``*.sql``): relative to the shipped ``queries/``,
      or absolute (a kind outside this repository).
    """

    name: str
    jobs: dict[str, str] = field(default_factory=dict)
    tables: str | None = None
    commands: str | None = None
    reports: dict[str, Report] = field(default_factory=dict)
    queries: str | None = None

    def queries_folder(self) -> Path | None:
        if self.queries is None:
            return None
        folder = Path(self.queries)
        if folder.is_absolute():
            return folder
        from quanta_db.resources import queries_dir

        return queries_dir() / folder


@cache
def result_kinds() -> dict[str, ResultKind]:
    """Every declared kind by name, in package order (``forget`` clears this after a new package
    appears on ``quanta_db.results.__path__``)."""
    package = importlib.import_module(RESULTS_PACKAGE)
    found: dict[str, ResultKind] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not info.ispkg:
            continue
        kind = getattr(importlib.import_module(f"{RESULTS_PACKAGE}.{info.name}"), "KIND", None)
        if not isinstance(kind, ResultKind):
            raise QuantaError(f"{RESULTS_PACKAGE}.{info.name} declares no KIND = ResultKind(...)")
        if kind.name in found:
            raise QuantaError(f"result kind {kind.name!r} is declared twice")
        found[kind.name] = kind
    _check_unique("job", [(name, kind.name) for kind in found.values() for name in kind.jobs])
    _check_unique("report", [(name, kind.name) for kind in found.values() for name in kind.reports])
    return found


def _check_unique(what: str, names: list[tuple[str, str]]) -> None:
    owners: dict[str, str] = {}
    for name, kind in names:
        if name in owners:
            raise QuantaError(f"{what} {name!r} is declared by both {owners[name]} and {kind}")
        owners[name] = kind


def forget() -> None:
    """Drop every registry cached from the declarations (a test adding a kind calls this)."""
    from quanta_db.store import registry

    result_kinds.cache_clear()
    registry.forget()


def jobs() -> dict[str, str]:
    """Every public job function → its module."""
    return {name: module for kind in result_kinds().values() for name, module in kind.jobs.items()}


def job(name: str):
    """The job function ``name`` (imported now)."""
    module = jobs().get(name)
    if module is None:
        raise AttributeError(f"module 'quanta_db' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def reports() -> dict[str, Report]:
    return {name: report for kind in result_kinds().values() for name, report in kind.reports.items()}


def report(name: str) -> Report:
    found = reports().get(name)
    if found is None:
        raise InputError(f"unknown report {name!r} ({', '.join(sorted(reports()))})")
    return found


def queries_folders() -> list[Path]:
    """The saved-analysis folder of every kind that has one."""
    return [folder for kind in result_kinds().values() if (folder := kind.queries_folder()) is not None]
