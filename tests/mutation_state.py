"""mutmut's results for the store, kept in the repository (``tests/data/mutation/``) so that the
full mutation run — hours on 2 CPU cores — can go on across fresh machines (docs/development.md):

    python -m tests.mutation_state restore   # before ``mutmut run``
    python -m tests.mutation_state save      # after it, or after stopping it
    python -m tests.mutation_state summary   # the figure, by file, and the sample's estimate
    python -m tests.mutation_state sample SIZE SEED  # draw unchecked mutants, for ``mutmut run NAME ...``
    python -m tests.mutation_state to-run-again  # survivors and unreached ones, for ``mutmut run NAME ...``
    python -m tests.mutation_state unchecked     # the mutants no run checked yet, likewise
    python -m tests.mutation_state unreached DATA_FILE  # mutants on lines no test runs (tests/mutation_reach.py)
    python -m tests.mutation_state unchecked-unreached  # those (left out of ``unchecked``), for a PostgreSQL run
    python -m tests.mutation_state tests-added   # after adding test modules to the selection
    python -m tests.mutation_state recollect [FILE ...]  # before a run, after changing tests (none: all)
    python -m tests.mutation_state tests-moved FROM TO ...  # after moving tests from module FROM into TOs

mutmut keeps a mutant's result while the source of its function is unchanged (a function's hash
is kept beside its results), so restored results of edited functions are checked again."""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
KEPT = REPOSITORY / "tests" / "data" / "mutation"
MUTANTS = REPOSITORY / "mutants"
STATS = "mutmut-stats.json"  # which tests reach which function, and their durations
KILLERS = "mutmut-killers.tsv"  # which test killed a mutant of which function (tests/conftest.py)
MUTATED = Path("quanta_db") / "store"
MUTANT_MARK = "__mutmut_"  # a mutant's name: <module>.<function>__mutmut_<number>


def save() -> None:
    """The run's results into the kept ones: a mutant's new result replaces its kept one; a kept
    result the run has none for stays while its function is unchanged (same hash), so results a
    run reset wholesale (mutmut does when the test selection changes) are not lost."""
    KEPT.mkdir(parents=True, exist_ok=True)
    for meta in sorted((MUTANTS / MUTATED).glob("*.py.meta")):
        kept = KEPT / meta.name
        merged = merge(json.loads(kept.read_text()), json.loads(meta.read_text())) if kept.is_file() else None
        if merged is None:
            shutil.copy2(meta, kept)
        else:
            kept.write_text(json.dumps(merged, indent=4))
    for kept_whole in (STATS, KILLERS):
        if (MUTANTS / kept_whole).is_file():
            shutil.copy2(MUTANTS / kept_whole, KEPT / kept_whole)


def merge(kept: dict, run: dict) -> dict:
    """One file's mutmut record: ``run``'s, with ``kept``'s results for the mutants ``run`` has
    none for whose function has the same hash in both (``run`` is filled in and returned)."""
    merged = run
    unchanged = {name for name, digest in run["hash_by_function_name"].items()
                 if kept["hash_by_function_name"].get(name) == digest}
    for key, code in kept["exit_code_by_key"].items():
        if code is not None and merged["exit_code_by_key"].get(key, 0) is None and _function(key) in unchanged:
            merged["exit_code_by_key"][key] = code
            for field in ("durations_by_key", "estimated_durations_by_key", "type_check_error_by_key"):
                if key in kept.get(field, {}):
                    merged.setdefault(field, {})[key] = kept[field][key]
    return merged


def mutated_function(mutant: str) -> str:
    """A mutant's function with its module: ``pkg.mod.x_name__mutmut_3`` → ``pkg.mod.x_name``."""
    return mutant.rpartition(MUTANT_MARK)[0]


def _function(mutant: str) -> str:
    """A mutant's function as mutmut's records name it: ``pkg.mod.x_name__mutmut_3`` → ``x_name``."""
    return mutated_function(mutant).rpartition(".")[2]


def restore() -> None:
    """The kept results into a new ``mutants/``: mutmut copies the sources there only when missing
    and keeps its copies of files it does not mutate (the SQL statements among them) however the
    originals changed since, so a ``mutants/`` left by an earlier run would test stale SQL."""
    shutil.rmtree(MUTANTS, ignore_errors=True)
    (MUTANTS / MUTATED).mkdir(parents=True, exist_ok=True)
    for meta in sorted(KEPT.glob("*.py.meta")):
        shutil.copy2(meta, MUTANTS / MUTATED / meta.name)
    for kept_whole in (STATS, KILLERS):
        if (KEPT / kept_whole).is_file():
            shutil.copy2(KEPT / kept_whole, MUTANTS / kept_whole)


def _mutant_statuses(meta: Path) -> dict[str, str]:
    """Each mutant of one mutated file (its ``.meta`` record) → mutmut's status for it."""
    from mutmut.stats import status_by_exit_code

    return {name: status_by_exit_code[code] for name, code in json.loads(meta.read_text())["exit_code_by_key"].items()}


def statuses(folder: Path = KEPT) -> dict[str, Counter]:
    """For each mutated file, how many of its mutants have each of mutmut's statuses."""
    return {meta.name.removesuffix(".meta"): Counter(_mutant_statuses(meta).values())
            for meta in sorted(folder.glob("*.py.meta"))}


def killed_share(counts: Counter) -> float | None:
    """Killed over covered mutants checked (killed, survived, timed out), mutmut's own score
    without the mutants no test reaches; None when none was checked."""
    covered = counts["killed"] + counts["survived"] + counts["timeout"]
    return counts["killed"] / covered if covered else None


def summary(folder: Path = KEPT) -> str:
    by_file = statuses(folder)
    total = sum(by_file.values(), Counter())
    lines = [f"{'file':<16} {'mutants':>7} {'checked':>7} {'killed':>6} {'survived':>8} {'timeout':>7} "
             f"{'no tests':>8} {'killed/covered':>14}"]
    for name, counts in [*by_file.items(), ("all", total)]:
        share = killed_share(counts)
        lines.append(f"{name:<16} {sum(counts.values()):>7} {sum(counts.values()) - counts['not checked']:>7} "
                     f"{counts['killed']:>6} {counts['survived']:>8} {counts['timeout']:>7} {counts['no tests']:>8} "
                     f"{'-' if share is None else f'{share:.1%}':>14}")
    return "\n".join(lines)


SAMPLE = "sample.txt"  # a uniform random sample of the mutants not yet checked when it was drawn


def draw_sample(size: int, seed: int, folder: Path = KEPT) -> list[str]:
    """``size`` of the mutants not yet checked, drawn uniformly (``seed``), kept in ``SAMPLE``:
    run by name, they estimate the killed share of all the unchecked ones, which the full run
    (cheapest first, so its checked mutants are no fair sample) takes many more hours to give."""
    import random

    candidates = sorted(unchecked(folder, reached=None))
    drawn = sorted(random.Random(seed).sample(candidates, min(size, len(candidates))))
    (folder / SAMPLE).write_text("\n".join(drawn) + "\n")
    return drawn


def sample_estimate(folder: Path = KEPT) -> str:
    """The sample's killed share over its covered, checked mutants with its 95% Clopper-Pearson
    interval (scipy), and the whole store's share estimated from it: every covered mutant checked
    as it is, the unchecked ones at the share of the sample's mutants in the functions that still
    have unchecked mutants. Post-stratified so: the full run checks the cheapest functions first,
    so the sample's mutants in the functions it finished are no sample of what is left."""
    from scipy.stats import binomtest

    if not (folder / SAMPLE).is_file():
        return "no sample drawn"
    drawn = set((folder / SAMPLE).read_text().split())
    every = {name: status for meta in folder.glob("*.py.meta") for name, status in _mutant_statuses(meta).items()}
    unchecked = [name for name, status in every.items() if status == "not checked"]
    still_open = {mutated_function(name) for name in unchecked}
    in_sample = Counter(every[name] for name in drawn if name in every)
    in_stratum = Counter(every[name] for name in drawn
                         if name in every and mutated_function(name) in still_open)
    lines = [_share_line(f"sample of {len(drawn)} (tests/data/mutation/{SAMPLE})", in_sample)]
    covered = in_stratum["killed"] + in_stratum["survived"] + in_stratum["timeout"]
    if not covered:
        return lines[0]
    lines.append(_share_line("  of it, in the functions with unchecked mutants", in_stratum))
    share = in_stratum["killed"] / covered
    covered_rate = covered / (sum(in_stratum.values()) - in_stratum["not checked"])
    checked = Counter(status for status in every.values() if status != "not checked")
    exact_covered = checked["killed"] + checked["survived"] + checked["timeout"]
    all_covered = exact_covered + len(unchecked) * covered_rate
    interval = binomtest(in_stratum["killed"], covered).proportion_ci(0.95)
    estimates = [(checked["killed"] + len(unchecked) * covered_rate * rate) / all_covered
                 for rate in (share, interval.low, interval.high)]
    lines.append(f"the whole store estimated at {estimates[0]:.1%} ({estimates[1]:.1%}-{estimates[2]:.1%}) of "
                 f"{all_covered:.0f} covered mutants: {exact_covered} checked, {len(unchecked)} not yet")
    return "\n".join(lines)


def _share_line(what: str, counts: Counter) -> str:
    """``counts``' killed share of its covered mutants, with its 95% Clopper-Pearson interval."""
    from scipy.stats import binomtest

    covered = counts["killed"] + counts["survived"] + counts["timeout"]
    checked = sum(counts.values()) - counts["not checked"]
    if not covered:
        return f"{what}: none checked yet"
    interval = binomtest(counts["killed"], covered).proportion_ci(0.95)
    return (f"{what}: {checked} checked, {covered} covered, {counts['killed']} killed: "
            f"{counts['killed'] / covered:.1%} of the covered (95% CI {interval.low:.1%}-{interval.high:.1%})")


def to_run_again(folder: Path = KEPT) -> list[str]:
    """The mutants that survived or that no test reached, by mutmut's name: to run again by name
    once tests were added (mutmut keeps a result while its function is unchanged, however the
    tests changed; a killed mutant stays killed with more tests)."""
    return [name for meta in sorted(folder.glob("*.py.meta"))
            for name, status in _mutant_statuses(meta).items() if status in ("survived", "no tests")]


def unchecked(folder: Path = KEPT, reached: bool | None = True) -> list[str]:
    """The mutants no run has checked yet, by mutmut's name: by default those the run's tests
    reach on the local catalog (``reached=False``: those they do not, listed by ``unreached``,
    for a run on PostgreSQL; None: all)."""
    from tests.mutation_reach import still_unreached

    unreached = still_unreached(folder) if reached is not None else set()
    return [name for meta in sorted(folder.glob("*.py.meta"))
            for name, status in _mutant_statuses(meta).items()
            if status == "not checked" and (reached is None or (name in unreached) != reached)]


def keep_results_for_added_tests() -> None:
    """Record the present test selection as the one the kept results were found with. mutmut
    resets every result when the selection changes; when the change only added test modules, a
    killed mutant is still killed, and only the mutants of :func:`to_run_again` need running."""
    from mutmut.configuration import config

    path = MUTANTS / STATS
    stats = json.loads(path.read_text())
    stats["config_fingerprint"]["test_selection"] = config().config_fingerprint()["test_selection"]
    path.write_text(json.dumps(stats, indent=4))


def move_tests(source: str, targets: list[str], folder: Path = KEPT) -> int:
    """Rename, in the kept statistics and killers, the tests of module ``source`` that were moved
    into the modules ``targets`` (found by their function's name), and record the test selection
    that lists the new modules as the one the results were found with: a moved test is the same
    test, and mutmut would otherwise collect it again as new and reset every result for the
    changed selection. How many tests were renamed."""
    import ast

    from mutmut.configuration import config

    moved = {node.name: target for target in targets
             for node in ast.parse((REPOSITORY / target).read_text()).body if isinstance(node, ast.FunctionDef)}

    def renamed(test: str) -> str:
        module, _, rest = test.partition("::")
        target = moved.get(rest.partition("[")[0]) if module == source else None
        return f"{target}::{rest}" if target else test

    path = folder / STATS
    stats = json.loads(path.read_text())
    durations = stats["duration_by_test"]
    count = sum(renamed(test) != test for test in durations)
    stats["duration_by_test"] = {renamed(test): seconds for test, seconds in durations.items()}
    stats["tests_by_mangled_function_name"] = {function: [renamed(test) for test in tests]
                                               for function, tests in stats["tests_by_mangled_function_name"].items()}
    stats["config_fingerprint"]["test_selection"] = config().config_fingerprint()["test_selection"]
    path.write_text(json.dumps(stats, indent=4))
    killers = folder / KILLERS
    if killers.is_file():
        rows = [line.split("\t") for line in killers.read_text().splitlines()]
        killers.write_text("".join(f"{function}\t{renamed(test)}\n" for function, test in rows))
    return count


def recollect(files: list[str], folder: Path = KEPT) -> int:
    """Forget the kept statistics of the tests in ``files`` (default: every test), so that the
    next ``mutmut run`` collects them again as new tests; how many were forgotten. mutmut collects
    a test's statistics (which store functions it calls) only once, under its name: a test that
    was changed afterwards keeps the functions its old text called, and a mutant that only the new
    text kills is reported as surviving. New statistics are added to the kept ones; no result is
    reset."""
    path = folder / STATS
    stats = json.loads(path.read_text())
    durations = stats["duration_by_test"]
    forgotten = [name for name in durations if not files or name.split("::")[0] in files]
    for name in forgotten:
        del durations[name]
    path.write_text(json.dumps(stats, indent=4))
    return len(forgotten)


if __name__ == "__main__":
    command = sys.argv[1:] or ["summary"]
    if command == ["save"]:
        save()
    elif command == ["restore"]:
        restore()
    elif command == ["summary"]:
        print(summary())
        print(sample_estimate())
    elif command[:1] == ["sample"] and len(command) == 3:
        print("\n".join(draw_sample(int(command[1]), int(command[2]))))
    elif command == ["to-run-again"]:
        print("\n".join(to_run_again()))
    elif command == ["unchecked"]:
        print("\n".join(unchecked()))
    elif command == ["unchecked-unreached"]:
        print("\n".join(unchecked(reached=False)))
    elif command[:1] == ["unreached"] and len(command) == 2:
        from tests.mutation_reach import record

        print(f"{record(Path(command[1]), REPOSITORY, KEPT)} mutants on lines the tests never run, listed")
    elif command == ["tests-added"]:
        keep_results_for_added_tests()
    elif command[:1] == ["recollect"]:
        print(f"{recollect(command[1:])} tests' statistics forgotten: the next run collects them again")
    elif command[:1] == ["tests-moved"] and len(command) >= 3:
        print(f"{move_tests(command[1], command[2:])} tests renamed in the kept statistics")
    else:
        sys.exit("usage: python -m tests.mutation_state [save | restore | summary | sample SIZE SEED | to-run-again"
                 " | unchecked | unchecked-unreached | unreached DATA_FILE | tests-added | recollect [FILE ...]"
                 " | tests-moved FROM TO ...]")
