"""A quick screen of the store's mutants against one module's unit tests, in one process, before
the slow ``mutmut run`` (docs/development.md, "Mutation testing"):

    python -m tests.mutation_screen generate                  # mutants/ only, no tests run
    python -m tests.mutation_screen tests/test_reach.py quanta_db.store.reach.x_one_scan_plan ...

mutmut's trampoline reads ``MUTANT_UNDER_TEST`` at every call, so one interpreter can switch
mutants between calls of the module's tests that need no fixture but ``tmp_path`` or
``monkeypatch`` (parametrised ones included). It prints the mutants whose names start with one of
the prefixes that none of those tests kills: where unit tests are missing. A mutant it lists may
still be killed by the store-level tests; one it does not list is killed for certain."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
MUTANTS = REPOSITORY / "mutants"
FIXTURES = {"tmp_path", "monkeypatch"}
SECONDS_PER_CALL = 5  # an endless loop counts as killed


def generate() -> None:
    """mutmut's mutants of the sources as they are now, in ``mutants/``, without running a test."""
    from mutmut.__main__ import (
        copy_also_copy_files,
        copy_src_dir,
        create_mutants,
        set_mutant_under_test,
        setup_source_paths,
        store_lines_covered_by_tests,
    )

    os.chdir(REPOSITORY)
    set_mutant_under_test("mutant_generation")
    MUTANTS.mkdir(exist_ok=True)
    copy_src_dir()
    copy_also_copy_files()
    setup_source_paths()
    store_lines_covered_by_tests()
    create_mutants(2)


def _with_fixtures(test: Callable, values: dict) -> Callable[[], object]:
    def call():
        from _pytest.monkeypatch import MonkeyPatch

        patch = MonkeyPatch()
        made = {"tmp_path": Path(tempfile.mkdtemp(prefix="mutation-screen-")), "monkeypatch": patch}
        wanted = set(inspect.signature(test).parameters) - set(values)
        try:
            return test(**values, **{name: made[name] for name in wanted})
        finally:
            patch.undo()
            shutil.rmtree(made["tmp_path"], ignore_errors=True)
    return call


def unit_calls(test_file: Path) -> list[tuple[str, Callable[[], object]]]:
    """Each test of ``test_file`` that needs no fixture but :data:`FIXTURES`, one call per case."""
    spec = importlib.util.spec_from_file_location("screened_tests", test_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    calls = []
    for name, test in vars(module).items():
        if not name.startswith("test_") or not callable(test):
            continue
        parameters = set(inspect.signature(test).parameters)
        marks = [m for m in getattr(test, "pytestmark", []) if m.name == "parametrize"]
        if not marks:
            if parameters <= FIXTURES:
                calls.append((name, _with_fixtures(test, {})))
            continue
        names, cases = marks[0].args[:2]
        names = [n.strip() for n in (names.split(",") if isinstance(names, str) else names)]
        if len(marks) == 1 and parameters - set(names) <= FIXTURES:
            calls += [(name, _with_fixtures(test, dict(zip(names, case if len(names) > 1 else (case,)))))
                      for case in cases]
    return calls


def _forget_results() -> None:
    """What the store keeps across calls in a process (the statement check's answers) was
    worked out under the previous mutant."""
    sandbox = sys.modules.get("quanta_db.store.sandbox")
    if sandbox is not None:
        sandbox._CHECKED.clear()


def _kills(calls) -> bool:
    _forget_results()
    for _, call in calls:
        signal.alarm(SECONDS_PER_CALL)
        try:
            call()
        except BaseException:  # noqa: BLE001 - any failure, the alarm's included, kills the mutant
            return True
        finally:
            signal.alarm(0)
    return False


def screen(test_file: Path, prefixes: list[str]) -> list[str]:
    """The mutants named with one of ``prefixes`` that no unit test of ``test_file`` kills."""
    sys.path[:0] = [str(MUTANTS), str(REPOSITORY)]
    os.environ["MUTANT_UNDER_TEST"] = ""
    calls = []
    for name, call in unit_calls(test_file):
        try:
            call()
            calls.append((name, call))
        except BaseException as error:  # noqa: BLE001 - reported, and left out of the screen
            print(f"fails without a mutant, left out: {name} ({type(error).__name__})", file=sys.stderr)
    names = sorted(name for meta in (MUTANTS / "quanta_db" / "store").glob("*.py.meta")
                   for name in json.loads(meta.read_text())["exit_code_by_key"] if name.startswith(tuple(prefixes)))

    def stop(*_):
        raise TimeoutError

    signal.signal(signal.SIGALRM, stop)
    survivors = []
    for name in names:
        os.environ["MUTANT_UNDER_TEST"] = name
        if not _kills(calls):
            survivors.append(name)
    os.environ["MUTANT_UNDER_TEST"] = ""
    print(f"{len(names)} mutants, {len(names) - len(survivors)} killed by {len(calls)} unit test calls", file=sys.stderr)
    return survivors


if __name__ == "__main__":
    if sys.argv[1:] == ["generate"]:
        generate()
    elif len(sys.argv) > 2:
        print("\n".join(screen(Path(sys.argv[1]).resolve(), sys.argv[2:])))
    else:
        sys.exit("usage: python -m tests.mutation_screen [generate | TEST_FILE MUTANT_PREFIX ...]")
