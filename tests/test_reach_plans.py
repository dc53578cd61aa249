"""How a statement's reach is planned without a store (quanta_db/store/reach.py): the plan read off
a statement's syntax tree for one plain scan, the conditions of the forms the lake prunes files by,
the exact ones among them, the scans of DuckDB's own plan, and the cache of plans."""

from __future__ import annotations

import json

import pytest

from quanta_db.store import reach, sandbox


def test_only_fixed_forms_of_filters_become_conditions():
    parse = sandbox.serialised
    assert reach.conditions("optional: model IN ('a', 'b')", parse) == [reach.Condition("model", "IN", ("a", "b"))]
    assert reach.conditions("step>=1000 AND step<=3000", parse) == [
        reach.Condition("step", ">=", ("1000",), False), reach.Condition("step", "<=", ("3000",), False)]
    assert reach.conditions("3 < step", parse) == [reach.Condition("step", ">", ("3",), False)]
    assert reach.conditions("x=1.25", parse) == [reach.Condition("x", "=", ("1.25",), False)]
    assert reach.conditions("model=CAST('a' AS VARCHAR) AND model IN ('b', 1)", parse) == [
        reach.Condition("model", "=", ("a",), True), reach.Condition("model", "IN", ("b", "1"), False)]
    assert reach.conditions("model='x'' OR 1=1 --'", parse) == [reach.Condition("model", "=", ("x' OR 1=1 --",))]
    for refused in ("model='a' OR step=1", "lower(model)='a'", "model=other", "model<>'a'", "model IS NULL",
                    "model='a') OR (1=1", "(SELECT 1)=1", "model=NULL", "t.model='a'", "model=CAST(NULL AS VARCHAR)",
                    "step IN (1, NULL)", '"odd key" = 1', "lower(model) BETWEEN 'a' AND 'b'", "1 BETWEEN 0 AND 2"):
        assert reach.conditions(refused, parse) == [], refused


def _scan(*conditions, direct=True, table="token_losses"):
    return (reach.ScanPlan(table, tuple(reach.Condition(*c) for c in conditions), direct),)


# A statement that scans one table once, and the plan read off its tree: the conditions on the
# table's per-file keys only, of the forms the lake prunes files by (as DuckDB's optimizer makes them).


ONE_SCAN = [
    ("SELECT * FROM token_losses", _scan()),
    ("SELECT * FROM token_losses WHERE true", _scan()),
    ("SELECT * FROM token_losses WHERE model = 'm' AND step = 5", _scan(("model", "=", ("m",)), ("step", "=", ("5",), False))),
    ("SELECT * FROM token_losses t WHERE t.model = 'm' AND 5 <= t.step",  # an alias; a constant on the left
     _scan(("model", "=", ("m",)), ("step", ">=", ("5",), False))),
    ("SELECT * FROM token_losses WHERE step > 2 AND step < 9 AND 3 > step AND 1 >= step AND 4 = step",
     _scan(*[("step", op, (n,), False) for op, n in ((">", "2"), ("<", "9"), ("<", "3"), ("<=", "1"), ("=", "4"))])),
    ("SELECT * FROM token_losses WHERE (model = 'a' AND (step = 1 AND corpus = 'c'))",  # nested conjunctions
     _scan(("model", "=", ("a",)), ("step", "=", ("1",), False), ("corpus", "=", ("c",)))),
    ("SELECT * FROM token_losses WHERE token_losses.corpus BETWEEN 'a' AND 'c'",  # qualified by the table's name
     _scan(("corpus", ">=", ("a",)), ("corpus", "<=", ("c",)))),
    ("SELECT * FROM token_losses WHERE step BETWEEN 1 AND '3'",  # one string: not compared as text
     _scan(("step", ">=", ("1",), False), ("step", "<=", ("3",), False))),
    ("SELECT * FROM token_losses WHERE model BETWEEN 1 AND 'z'",
     _scan(("model", ">=", ("1",), False), ("model", "<=", ("z",), False))),
    ("SELECT * FROM token_losses WHERE model LIKE 'pyt%'", _scan(("model", ">=", ("pyt",)), ("model", "<", ("pyu",)))),
    ("SELECT * FROM token_losses WHERE step = 1 AND model LIKE 'a%'",
     _scan(("step", "=", ("1",), False), ("model", ">=", ("a",)), ("model", "<", ("b",)))),
    ("SELECT * FROM token_losses WHERE contains(model, 'py%') AND starts_with(model, 'p')", _scan()),  # no LIKE
    ("SELECT * FROM token_losses t WHERE like(t.model, CAST('py%' AS VARCHAR))",
     _scan(("model", ">=", ("py",)), ("model", "<", ("pz",)))),
    ("SELECT * FROM token_losses WHERE step LIKE '1%' AND model LIKE 'p_%' AND model LIKE 1", _scan()),  # no text prefix
    ("SELECT * FROM token_losses WHERE model IN ('a', 'b') AND other.corpus = 'x' AND loss_nats > 1",
     _scan(("model", "IN", ("a", "b")))),  # another qualifier, a column that is no key: left out
    ("SELECT * FROM token_losses t WHERE t.step IN (1, '2')", _scan(("step", "IN", ("1", "2"), False))),
    ("SELECT * FROM token_losses WHERE model IN ('a', 1)", _scan(("model", "IN", ("a", "1"), False))),
    ("SELECT * FROM token_losses WHERE step IN (1, 2, NULL) AND step IN (1, step) AND model = NULL", _scan()),
    ("SELECT * FROM token_losses WHERE step BETWEEN 1 AND NULL AND step BETWEEN NULL AND 2", _scan()),
    ("SELECT * FROM token_losses WHERE step = CAST('5' AS BIGINT) AND corpus = TRY_CAST('c' AS VARCHAR)",
     _scan(("step", "=", ("5",), False))),  # a CAST of a constant is one; a TRY_CAST may be NULL
    ("SELECT * FROM token_losses WHERE model = CAST('a' AS VARCHAR) AND corpus = CAST(1 AS VARCHAR)",
     _scan(("model", "=", ("a",)), ("corpus", "=", ("1",), False))),
    ("SELECT * FROM token_losses WHERE step = 1.50", _scan(("step", "=", ("1.50",), False))),
    ("SELECT * FROM TOKEN_LOSSES T WHERE T.MODEL = 'a' AND \"Step\" = 2",
     _scan(("model", "=", ("a",)), ("step", "=", ("2",), False))),
    ("SELECT * FROM main.token_losses WHERE model = 'a'", _scan(("model", "=", ("a",)), direct=False)),
    ("SELECT * FROM tables.token_losses", _scan(direct=False)),
    ("SELECT * FROM lake.main.token_losses", _scan(direct=False)),
    ("SELECT * FROM tokens WHERE corpus = 'c'", _scan(("corpus", "=", ("c",)), table="tokens")),
    ("SELECT * FROM runs WHERE run_id = 'x'", ()),  # a catalog table: no files
    ("SELECT * FROM token_losses AT (VERSION => 1)", None),
    ("SELECT * FROM token_losses TABLESAMPLE 10%", None),
    ("SELECT * FROM token_losses WHERE step = ?", None),
    ("SELECT * FROM token_losses, token_losses", None),
    ("SELECT * FROM token_losses WHERE EXISTS (SELECT 1)", None),
    ("SELECT * FROM (SELECT * FROM token_losses)", None),
    ("SELECT * FROM token_losses UNION ALL SELECT * FROM token_losses", None),
    ("SELECT 1", None), ("SELECT 1; SELECT 2", None), ("", None),
]


@pytest.mark.parametrize(("sql", "planned"), ONE_SCAN)
def test_a_plain_scan_is_planned_off_its_tree(sql, planned):
    assert reach.one_scan_plan(sandbox.serialised(sql)) == planned


@pytest.mark.parametrize("sql", [
    "SELECT * FROM cluster_sizes", "SELECT * FROM tokens_per_subset", "SELECT * FROM no_such_table",
    "SELECT * FROM information_schema.tables", "SELECT * FROM other.token_losses", "SELECT * FROM temp.main.runs",
    "WITH token_losses AS (SELECT 'm' AS model) SELECT * FROM token_losses WHERE model = 'm'",  # the name is the CTE's
])
def test_a_statement_on_a_view_or_outside_the_lake_is_left_to_duckdbs_planner(sql):
    """Only a lake table's own name is one plain scan: a view (a saved analysis, a derived view)
    reads other tables, and a name in another schema or catalog, or one a CTE defines, is not the lake's table."""
    assert reach.one_scan_plan(sandbox.serialised(sql)) is None


def test_the_scans_of_a_plan_are_found_at_any_depth_with_their_filters():
    """The shape of ``EXPLAIN (FORMAT json)``: operators with ``children``; a lake scan's
    ``extra_info`` names its table and holds one filter as text or several as a list."""
    scan = reach.SCAN_OPERATOR
    plan = [{"name": "PROJECTION", "extra_info": {"Table": "not a scan"}, "children": [
        {"name": "HASH_JOIN", "children": [
            {"name": scan, "extra_info": {"Table": "token_losses", "Filters": "model='a'"}},
            {"name": "FILTER", "children": [
                {"name": scan, "extra_info": {"Table": "tokens", "Filters": ["corpus='c'", "pos>=1"]}}]}]}]},
        {"name": scan, "extra_info": {"Table": "documents"}}]
    assert sorted(reach.scans(plan)) == [reach.Scan("documents", ()), reach.Scan("token_losses", ("model='a'",)),
                                         reach.Scan("tokens", ("corpus='c'", "pos>=1"))]
    assert reach.scans([]) == [] and reach.scans([{"name": "PROJECTION"}]) == []
    with pytest.raises(KeyError):  # a scan without its table: plan() leaves the statement unconfined
        reach.scans([{"name": scan, "extra_info": {}}])


@pytest.mark.parametrize(("pattern", "prefix"), [
    ("ab%", "ab"), ("a%", "a"), ("a\U0010fffe%", "a\U0010fffe"),
    (None, None), ("", None), ("%", None), ("ab", None),  # no prefix, or no trailing wildcard
    ("a_%", None), ("%a%", None), ("a\\%", None), ("aX%", "aX"),  # another wildcard or an escape
    ("ab\U0010ffff%", None), ("a\U0010ffffb%", "a\U0010ffffb"),  # the last code point has no successor
])
def test_a_like_pattern_gives_a_prefix_only_when_it_is_one(pattern, prefix):
    assert reach._like_prefix(pattern) == prefix


def test_the_keys_text_test_looks_for_text_keys_compared_for_equality_with_verbatim_constants():
    """What ``verbatim_needles`` gives, written out: only a text key compared with ``=`` or ``IN``
    against string constants that ``json.dumps`` writes as they are."""
    types = {"model": "VARCHAR", "corpus": "VARCHAR", "step": "BIGINT", "odd key": "VARCHAR"}
    condition = reach.Condition
    usable = (condition("model", "=", ("pythia-70m",)), condition("corpus", "IN", ("pile", "dm math")),
              condition("step", "=", ("1000",)), condition("model", ">", ("a",)),
              condition("corpus", "=", ("1",), strings=False), condition("odd key", "=", ("x",)),
              condition("corpus", "=", ('say "hi"',)), condition("corpus", "=", ("naïve",)), condition("model", "IN", ("b",)))
    assert reach.verbatim_needles(usable, types) == [
        ('"model": "', ['"model": "pythia-70m"']),
        ('"corpus": "', ['"corpus": "pile"', '"corpus": "dm math"']),
        ('"model": "', ['"model": "b"']),
    ]
    keys = json.dumps({"corpus": "dm math", "model": "pythia-70m"}, sort_keys=True)  # as runs.py writes them
    assert all(any(text in keys for text in texts) for _, texts in reach.verbatim_needles(usable[:-1], types))


@pytest.mark.parametrize(("condition", "kind", "exact"), [
    (("model", "=", ("a",)), "VARCHAR", True), (("model", "=", ("1",), False), "VARCHAR", False),
    (("step", "=", ("1000",), False), "BIGINT", True), (("step", "IN", ("-3", "0"), False), "INTEGER", True),
    (("step", "<", ("999.6",), False), "BIGINT", False), (("step", "=", ("007",), False), "BIGINT", False),
    (("step", "=", ("1e3",), False), "BIGINT", False), (("step", "=", ("1",)), "BIGINT", True),
    (("n", "=", ("0",), False), "UTINYINT", True), (("n", "=", ("255",), False), "UTINYINT", True),
    (("n", "=", ("256",), False), "UTINYINT", False), (("n", "=", ("-1",), False), "UBIGINT", False),
    (("n", "=", ("-128",), False), "TINYINT", True), (("n", "=", ("-129",), False), "TINYINT", False),
    (("n", "=", (str(2**63),), False), "BIGINT", False), (("n", "IN", ("1", "x"), False), "BIGINT", False),
    (("x", "=", ("1",), False), "DOUBLE", False), (("x", "=", ("0",), False), "DATE", False),
])
def test_a_condition_is_exact_for_text_with_strings_and_integers_written_canonically_in_range(condition, kind, exact):
    """Only those comparisons may leave a file out: DuckDB compares them as written."""
    assert reach.exact(reach.Condition(*condition), kind) is exact


def test_the_catalogs_conditions_are_the_exact_ones_each_with_its_parameters():
    """``reach._conditions``: a condition DuckDB may not compare exactly is left out, and those
    after it still count."""
    types = {"model": "VARCHAR", "step": "BIGINT"}
    usable = [reach.Condition("step", "=", ("1.5",), False), reach.Condition("model", "IN", ("a", "b")),
              reach.Condition("model", "=", ("1",), False), reach.Condition("step", ">=", ("10",), False)]
    sql, params = reach._conditions(usable, types)
    assert sql == ("(TRY_CAST(json_extract_string(keys, ?) AS VARCHAR) IN (TRY_CAST(? AS VARCHAR), TRY_CAST(? AS VARCHAR)))"
                   " IS NOT FALSE AND (TRY_CAST(json_extract_string(keys, ?) AS BIGINT) >= (TRY_CAST(? AS BIGINT))) IS NOT FALSE")
    assert params == ['$."model"', "a", "b", '$."step"', "10"]
    assert reach._conditions(usable[:1], types) == ("true", [])


def test_plans_are_kept_for_the_statements_used_last():
    """``reach.Plans``: a full cache drops the plan used least recently, not the one just put."""
    plans = reach.Plans(size=2)
    plans.put(("a", "None"), "plan a", True)
    plans.put(("b", "None"), "plan b", False)
    assert plans.get(("a", "None")) == ("plan a", True)  # a is now the more recent
    plans.put(("c", "None"), "plan c", True)
    assert plans.get(("b", "None")) is reach.UNPLANNED
    assert plans.get(("a", "None")) == ("plan a", True) and plans.get(("c", "None")) == ("plan c", True)
