"""Which mutants of the store the mutation run can kill at all, by line coverage.

mutmut counts a mutant as covered when a test calls its function, and then runs every test that
calls the function against it. A mutant whose line no test executes in the run (a PostgreSQL
branch, while the run uses the local catalog) survives after costing the whole set of those tests
— minutes each for the most-used functions. This module reads a coverage.py data file of the
run's tests (docs/development.md, "Mutation testing", has the command) and lists those mutants,
so a run can check them on PostgreSQL instead of spending hours to see them survive:

    python -m tests.mutation_state unreached DATA_FILE   # lists them, in UNREACHED
    python -m tests.mutation_state unchecked             # then leaves them out
    python -m tests.mutation_state unchecked-unreached   # them, for a run on PostgreSQL

A mutant's line is found by comparing, in ``mutants/`` (made by ``mutmut run``), its function's
text with the original's; the line is reached when any line of the innermost statement holding
it ran (coverage.py records a statement under one of its lines)."""

from __future__ import annotations

import ast
import difflib
import json
from pathlib import Path

from tests.mutation_state import MUTANT_MARK, MUTATED, _function, mutated_function

UNREACHED = "unreached.json"  # mutant → its function's hash when it was found unreached


def changed_lines(original: str, mutant: str) -> set[int]:
    """The 0-based lines of function text ``original`` that ``mutant`` changes (the line before,
    for text only inserted)."""
    matcher = difflib.SequenceMatcher(a=original.splitlines(), b=mutant.splitlines(), autojunk=False)
    lines = set()
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        if tag != "equal":
            lines.update(range(i1, i2) if i2 > i1 else [max(i1 - 1, 0)])
    return lines


def statement_lines(tree: ast.AST) -> list[range]:
    """Each statement's own lines: a simple statement's all, a compound one's header only (up to
    its first inner statement), innermost last among those holding a line."""
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt):
            inner = [child.lineno for field in ("body", "orelse", "finalbody", "handlers")
                     for child in getattr(node, field, []) or []]
            end = min(inner) - 1 if inner else node.end_lineno
            spans.append(range(node.lineno, max(end, node.lineno) + 1))
    return sorted(spans, key=len)


def _definitions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    """The source's functions under mutmut's names: ``x_name``, ``xǁClassǁmethod``."""
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[f"x_{node.name}"] = node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found[f"xǁ{node.name}ǁ{item.name}"] = item
    return found


def unreached_mutants(source_file: Path, mutants_file: Path, executed: set[int]) -> list[str]:
    """The mutants in ``mutants_file`` (mutmut's copy of ``source_file``) whose changed lines are
    in no statement of ``source_file`` that ran (``executed``: its lines coverage.py recorded)."""
    tree = ast.parse(source_file.read_text())
    definitions, spans = _definitions(tree), statement_lines(tree)
    mutated = mutants_file.read_text()
    mutated_lines = mutated.splitlines()
    texts = {node.name: "\n".join(mutated_lines[node.lineno - 1:node.end_lineno]) for node in ast.walk(ast.parse(mutated))
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    module = ".".join(source_file.with_suffix("").parts[-3:])
    unreached = []
    for name, text in texts.items():
        function, mark, number = name.rpartition(MUTANT_MARK)
        original = f"{function}{MUTANT_MARK}orig"
        if not mark or not number.isdigit() or function not in definitions or original not in texts:
            continue
        first = definitions[function].lineno
        renamed = text.replace(name, original, 1)  # the def lines differ by name only
        lines = {first + offset for offset in changed_lines(texts[original], renamed)}
        if lines and not any(executed & set(_innermost(spans, line)) for line in lines):
            unreached.append(f"{module}.{name}")
    return unreached


def _innermost(spans: list[range], line: int) -> range:
    return next((span for span in spans if line in span), range(line, line + 1))


def record(data_file: Path, repository: Path, kept: Path) -> int:
    """List, in ``kept / UNREACHED``, the mutants of every mutated file that the tests recorded in
    coverage data ``data_file`` never reach, with their function's hash (a listed mutant counts as
    reached again once its function changed); how many."""
    from coverage import CoverageData

    data = CoverageData(basename=str(data_file))
    data.read()
    listed = {}
    for meta in sorted(kept.glob("*.py.meta")):
        relative = MUTATED / meta.name.removesuffix(".meta")
        hashes = json.loads(meta.read_text())["hash_by_function_name"]
        executed = set(data.lines(str((repository / relative).resolve())) or [])
        for mutant in unreached_mutants(repository / relative, repository / "mutants" / relative, executed):
            listed[mutant] = hashes.get(_function(mutant))
    (kept / UNREACHED).write_text(json.dumps(listed, indent=1, sort_keys=True) + "\n")
    return len(listed)


def still_unreached(kept: Path) -> set[str]:
    """The listed mutants whose function is unchanged since they were listed."""
    path = kept / UNREACHED
    if not path.is_file():
        return set()
    hashes = {}
    for meta in kept.glob("*.py.meta"):
        module = f"quanta_db.store.{meta.name.removesuffix('.py.meta')}"
        for function, digest in json.loads(meta.read_text())["hash_by_function_name"].items():
            hashes[f"{module}.{function}"] = digest
    return {mutant for mutant, digest in json.loads(path.read_text()).items()
            if hashes.get(mutated_function(mutant)) == digest}
