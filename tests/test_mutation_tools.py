"""The mutation run's tooling (tests/mutation_reach.py): which mutants sit on lines no test runs,
checked on a small module written out with a mutmut-style copy beside it."""

from __future__ import annotations

import json

from tests import mutation_reach

SOURCE = '''def f(on_postgres):
    if on_postgres:
        return "pg"
    return "local"


class C:
    def g(self, items):
        return sorted(
            items,
            reverse=True,
        )
'''

MUTANTS = '''def x_f__mutmut_orig(on_postgres):
    if on_postgres:
        return "pg"
    return "local"


def x_f__mutmut_1(on_postgres):
    if on_postgres:
        return "XXpgXX"
    return "local"


def x_f__mutmut_2(on_postgres):
    if on_postgres:
        return "pg"
    return "XXlocalXX"


def x_f__mutmut_3(on_postgres):
    if not on_postgres:
        return "pg"
    return "local"


def xǁCǁg__mutmut_orig(self, items):
    return sorted(
        items,
        reverse=True,
    )


def xǁCǁg__mutmut_1(self, items):
    return sorted(
        items,
        reverse=False,
    )
'''


def test_a_mutant_is_unreached_only_when_no_line_of_its_statement_ran(tmp_path):
    source = tmp_path / "quanta_db" / "store" / "m.py"
    source.parent.mkdir(parents=True)
    source.write_text(SOURCE)
    copy = tmp_path / "mutants" / "m.py"
    copy.parent.mkdir()
    copy.write_text(MUTANTS)
    # the local catalog's run: the branch test and the local return ran; the method's call is
    # recorded under its first line only, as coverage.py records a statement of several lines
    executed = {1, 2, 4, 7, 8, 9}
    assert mutation_reach.unreached_mutants(source, copy, executed) == ["quanta_db.store.m.x_f__mutmut_1"]
    assert mutation_reach.unreached_mutants(source, copy, {1, 2, 3, 4, 7, 8}) == ["quanta_db.store.m.xǁCǁg__mutmut_1"]
    assert mutation_reach.changed_lines("a\nb\nc", "a\nB\nc") == {1}


def test_a_listed_mutant_counts_as_reached_again_once_its_function_changed(tmp_path):
    (tmp_path / "m.py.meta").write_text(json.dumps({"hash_by_function_name": {"x_f": "new", "x_h": "same"}}))
    (tmp_path / mutation_reach.UNREACHED).write_text(json.dumps({
        "quanta_db.store.m.x_f__mutmut_1": "old", "quanta_db.store.m.x_h__mutmut_4": "same"}))
    assert mutation_reach.still_unreached(tmp_path) == {"quanta_db.store.m.x_h__mutmut_4"}
