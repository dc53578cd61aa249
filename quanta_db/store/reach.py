"""Which committed files one statement can read: so a user connection is confined to those rather
than to all of the store's (DuckDB's ``allowed_paths`` costs about 13 µs a path to set, 0.3 s at
25,000 files, more than the query it guards).

DuckDB plans the statement on a connection that can read no data file (planning reads only the
catalog); the plan (``EXPLAIN (FORMAT json)``) names each lake table a scan reads and the filters
pushed into it. A committed file holds one value of each of its table's per-file keys (the
``files`` table's ``keys``), so a filter that compares a key with constants is false for every
row of a file whose key makes it false: the lake itself skips that file by its statistics (its
min and max of the key are that one value), and so may the confinement.

Only filters of the forms the lake prunes files by are used — ``key <op> constant`` for ``=``,
``<``, ``<=``, ``>``, ``>=``, ``key IN (constants)``, and conjunctions of them; any other filter,
or a part of one, is left out, which can only allow more files. They are evaluated as SQL built
from those fixed forms, with the key's name and the constants as parameters: nothing of the
filter's text reaches the catalog. A file with no recorded keys is always allowed.

Should the lake still open a file left out (a filter form it prunes by differently), the query
fails with DuckDB's permission error and runs again confined to every committed file
(:mod:`quanta_db.store.snapshots`): this narrows what a connection may open, never what it
answers.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from decimal import Decimal
from typing import NamedTuple

import duckdb
import pyarrow as pa

from quanta_db.store import lake, sandbox
from quanta_db.store.registry import catalog_tables, fact_tables
from quanta_db.store.sql import statement

SCAN_OPERATOR = "DUCKLAKE_SCAN"
OPTIONAL_PREFIX = "optional: "
COMPARISONS = {"COMPARE_EQUAL": "=", "COMPARE_LESSTHAN": "<", "COMPARE_LESSTHANOREQUALTO": "<=",
               "COMPARE_GREATERTHAN": ">", "COMPARE_GREATERTHANOREQUALTO": ">="}
MIRRORED = {"=": "=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
# The DuckDB type a key of each Arrow type is compared as: text and integers only, whose comparisons
# with a constant are exact (other types are not compared, so never narrow what a statement reaches).
KEY_TYPES = {pa.string(): "VARCHAR", pa.large_string(): "VARCHAR", pa.int64(): "BIGINT", pa.int32(): "INTEGER",
             pa.int16(): "SMALLINT", pa.int8(): "TINYINT", pa.uint64(): "UBIGINT", pa.uint32(): "UINTEGER",
             pa.uint16(): "USMALLINT", pa.uint8(): "UTINYINT"}
INTEGER_RANGES = {"BIGINT": (-2**63, 2**63 - 1), "INTEGER": (-2**31, 2**31 - 1), "SMALLINT": (-2**15, 2**15 - 1),
                  "TINYINT": (-2**7, 2**7 - 1), "UBIGINT": (0, 2**64 - 1), "UINTEGER": (0, 2**32 - 1),
                  "USMALLINT": (0, 2**16 - 1), "UTINYINT": (0, 2**8 - 1)}
CANONICAL_INTEGER = re.compile(r"-?(0|[1-9][0-9]*)")
MAX_REACHES = 256  # statements whose plans (and, per snapshot, files) are remembered
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Scan(NamedTuple):
    table: str
    filters: tuple[str, ...]  # DuckDB's rendering of each filter pushed into the scan


class Condition(NamedTuple):
    key: str
    op: str                  # one of COMPARISONS' values, or "IN"
    constants: tuple[str, ...]  # as text, cast to the key's type in SQL
    strings: bool = True     # every constant is a string literal (a text key is compared as text only then)


def scans(plan: list[dict]) -> list[Scan]:
    """Every lake-table scan of a plan (``EXPLAIN (FORMAT json)``'s parsed value)."""
    found, stack = [], list(plan)
    while stack:
        node = stack.pop()
        if node.get("name") == SCAN_OPERATOR:
            info = node.get("extra_info") or {}
            filters = info.get("Filters") or []
            found.append(Scan(str(info["Table"]), tuple([filters] if isinstance(filters, str) else filters)))
        stack.extend(node.get("children") or [])
    return found


def conditions(filter_text: str, parse) -> list[Condition]:
    """The conditions of the usable forms in one rendered filter (none when it is of no usable
    form); ``parse`` gives DuckDB's serialised tree of a SELECT statement's text."""
    text = filter_text.removeprefix(OPTIONAL_PREFIX)
    tree = parse(f"SELECT 1 WHERE {text}")
    try:
        where = tree["statements"][0]["node"]["where_clause"]
    except (KeyError, IndexError, TypeError):
        return []
    return list(_conjuncts(where))


def _conjuncts(node: dict, qualifiers: frozenset[str] = frozenset(), types: dict[str, str] | None = None):
    """The usable conditions of a filter's tree: its columns unqualified or qualified by one of
    ``qualifiers``; a LIKE prefix only on a key ``types`` says is text."""
    kind = node.get("type")
    if kind == "CONJUNCTION_AND":
        for child in node.get("children") or []:
            yield from _conjuncts(child, qualifiers, types)
    elif kind in COMPARISONS:
        op, left, right = COMPARISONS[kind], node.get("left") or {}, node.get("right") or {}
        if _constant(left) is not None:
            op, left, right = MIRRORED[op], right, left
        key, value = _key(left, qualifiers), _constant(right)
        if key and value is not None:
            yield Condition(key, op, (value,), _string(right))
    elif kind == "COMPARE_BETWEEN":
        key, low, high = (_key(node.get("input") or {}, qualifiers), _constant(node.get("lower") or {}),
                          _constant(node.get("upper") or {}))
        if key and low is not None and high is not None:
            strings = _string(node.get("lower") or {}) and _string(node.get("upper") or {})
            yield from (Condition(key, ">=", (low,), strings), Condition(key, "<=", (high,), strings))
    elif kind == "FUNCTION" and node.get("function_name") in ("~~", "like") and len(node.get("children") or []) == 2:
        column, pattern = node["children"]
        key, prefix = _key(column, qualifiers), _like_prefix(_constant(pattern))
        # what DuckDB's optimizer makes of it: prefix <= key < the next prefix
        if key and prefix and (types or {}).get(key) == "VARCHAR" and _string(pattern):
            yield from (Condition(key, ">=", (prefix,)), Condition(key, "<", (prefix[:-1] + chr(ord(prefix[-1]) + 1),)))
    elif kind == "COMPARE_IN":
        first, *rest = node.get("children") or [{}]
        key, values = _key(first, qualifiers), [_constant(child) for child in rest]
        if key and values and None not in values:
            yield Condition(key, "IN", tuple(values), all(_string(child) for child in rest))


def _like_prefix(pattern: str | None) -> str | None:
    """``abc`` for the LIKE pattern ``abc%`` (no other wildcard or escape), else None."""
    if not pattern or not pattern.endswith("%") or len(pattern) < 2:
        return None
    prefix = pattern[:-1]
    if any(c in prefix for c in "%_\\") or ord(prefix[-1]) >= 0x10FFFF:
        return None
    return prefix


def _key(node: dict, qualifiers: frozenset[str] = frozenset()) -> str | None:
    """The column a reference names: unqualified, or qualified by one of ``qualifiers``."""
    if node.get("type") != "COLUMN_REF":
        return None
    names = node.get("column_names") or []
    if not names or not IDENTIFIER.fullmatch(names[-1]):
        return None
    if len(names) == 1 or (len(names) == 2 and names[0].lower() in qualifiers):
        return names[-1].lower()  # names are case-insensitive in DuckDB, quoted or not; keys are lower case
    return None


def _constant(node: dict) -> str | None:
    """A non-NULL constant as text (through a CAST of one), or None."""
    if node.get("type") == "OPERATOR_CAST" and not node.get("try_cast"):
        return _constant(node.get("child") or {})
    if node.get("type") != "VALUE_CONSTANT":
        return None
    value = node.get("value") or {}
    if value.get("value") is None or isinstance(value.get("value"), (dict, list)):  # a NULL is serialised without one
        return None
    kind = value.get("type") or {}
    if kind.get("id") == "DECIMAL":  # serialised as the unscaled integer
        scale = (kind.get("type_info") or {}).get("scale")
        if not isinstance(scale, int):
            return None
        return str(Decimal(int(value["value"])).scaleb(-scale))
    # A boolean's text ("True") matches no key: neither a string literal nor a canonical integer.
    return str(value["value"])


def _string(node: dict) -> bool:
    """Whether a constant is a string literal (through CASTs to VARCHAR only)."""
    if node.get("type") == "OPERATOR_CAST":
        return (node.get("cast_type") or {}).get("id") == "VARCHAR" and _string(node.get("child") or {})
    return ((node.get("value") or {}).get("type") or {}).get("id") == "VARCHAR"


def exact(condition: Condition, kind: str) -> bool:
    """Whether DuckDB compares a key of type ``kind`` with ``condition``'s constants exactly as
    they are written, so that a file its key makes the condition false for can be left out: a text
    key with string literals (another constant makes DuckDB compare the key cast to it), an
    integer key with integers written canonically in its range (DuckDB rounds ``'999.6'`` cast to
    an integer to 1000, while ``step > 999.6`` holds for step 1000)."""
    if kind == "VARCHAR":
        return condition.strings
    if kind not in INTEGER_RANGES:
        return False
    low, high = INTEGER_RANGES[kind]
    return all(CANONICAL_INTEGER.fullmatch(text) and low <= int(text) <= high for text in condition.constants)


def key_types(table: str) -> dict[str, str]:
    """The per-file keys of fact table ``table`` that conditions may compare, with their DuckDB
    types (none for a table that is not a fact table)."""
    spec = fact_tables().get(table)
    if spec is None:
        return {}
    columns = dict(spec.columns)
    return {key: KEY_TYPES[columns[key]] for key in spec.file_keys if columns.get(key) in KEY_TYPES}


# Parts of a statement tree after which it is no longer one plain scan of one table.
NOT_ONE_SCAN = frozenset({"SUBQUERY", "TABLE_FUNCTION", "JOIN", "EXPRESSION_LIST", "PIVOT", "SHOW_REF",
                          "COLUMN_DATA", "DELIM_GET", "EMPTY_FROM", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE",
                          "CTE_NODE", "VALUE_PARAMETER"})


def one_scan_plan(tree: dict) -> tuple[ScanPlan, ...] | None:
    """The plan of a statement that scans one fact table's view (or one catalog table) once, read off its serialised
    tree (``SELECT ... FROM token_losses WHERE model = 'x' AND step IN (...) ...``) without
    binding it; None for any other statement (which is planned by DuckDB). The table's columns
    are the only names its filters can mean (a table column wins over a select-list alias)."""
    statements = tree.get("statements") or []  # none unless it is one SELECT statement
    if len(statements) != 1:
        return None
    node = statements[0].get("node") or {}
    source = node.get("from_table") or {}
    if node.get("type") != "SELECT_NODE":
        return None
    if source.get("type") != "BASE_TABLE":  # a join, a subquery, a table function...
        return None
    try:  # the names DuckDB writes for every base table; a tree of another shape is DuckDB's to plan
        table, schema, catalog = (str(source[name]).lower() for name in ("table_name", "schema_name", "catalog_name"))
    except KeyError:
        return None
    if ((node.get("cte_map") or {}).get("map") or source.get("at_clause") or source.get("sample")
            or table not in {*fact_tables(), *catalog_tables()} or schema not in ("", "main", "tables")
            or catalog not in ("", lake.LAKE) or _kinds(node).count("BASE_TABLE") != 1 or NOT_ONE_SCAN & set(_kinds(node))):
        return None
    if table not in fact_tables():
        return ()  # a catalog table: its rows live in the catalog, not in files
    qualifiers = frozenset(name.lower() for name in (table, source.get("alias")) if name)
    where = node.get("where_clause")
    types = key_types(table)
    found = [] if where is None else [c for c in _conjuncts(where, qualifiers, types) if c.key in types]
    return (ScanPlan(table, tuple(found), not schema and not catalog),)


def _kinds(node) -> list[str]:
    """The ``type`` of every part of a serialised tree."""
    found, parts = [], [node]
    for item in parts:  # the list grows as it is read: every part, breadth first
        if isinstance(item, dict):
            if isinstance(item.get("type"), str):
                found.append(item["type"])
            parts.extend(item.values())
        elif isinstance(item, list):
            parts.extend(item)
    return found


class ScanPlan(NamedTuple):
    table: str
    conditions: tuple[Condition, ...]  # the usable ones: on the table's per-file keys
    # a statement that is this one scan of a fact table named without schema or catalog, which may
    # read the files it reaches directly (:mod:`quanta_db.store.direct`)
    direct: bool = False


def plan(con, sql: str, params: list | None = None) -> tuple[ScanPlan, ...] | None:
    """What ``sql`` (a SELECT) scans of the lake's tables and the conditions that prune their
    files, planned on ``con`` (a connection that can read no data file), or None when it does
    not plan there (it reads a file by name). Plans depend on the schema, not on the files, so a
    plan holds for later states of the catalog too."""
    cursor = lake.cursor(con)
    try:
        rows = cursor.execute(f"EXPLAIN (FORMAT json) {sql}", params or None).fetchall()
        found = scans([node for _, text in rows for node in json.loads(text)])
        return tuple(ScanPlan(scan.table, tuple(c for text in scan.filters for c in conditions(text, sandbox.serialised)
                                                if c.key in key_types(scan.table))) for scan in found)
    except (duckdb.Error, KeyError):  # KeyError: a scan that names no table, which DuckDB does not write
        return None
    finally:
        cursor.close()


def reached_files(con, folder: str, plans: tuple[ScanPlan, ...]) -> frozenset[str]:
    """The paths (``folder`` + the store-relative path) of the committed files the scans of
    ``plans`` may read, evaluated on ``con`` (a connection to the catalog)."""
    paths: set[str] = set()
    for scan in plans:
        conditions, params = _conditions(list(scan.conditions), key_types(scan.table))
        sql = statement("reached_files").format(conditions=conditions)
        paths.update(con.execute(sql, [folder, scan.table, *params]).fetchone()[0])
    return frozenset(paths)


HOLDS = "contains(keys::VARCHAR, ?)"  # a file's keys, as text, hold a needle (verbatim_needles)


def reached_new_files(con, folder: str, plans: tuple[ScanPlan, ...], new_files: str,
                      since: int, until: int) -> frozenset[str]:
    """As :func:`reached_files`, for the files committed after snapshot ``since`` up to ``until``
    only, read from the metadata table ``new_files`` (:attr:`quanta_db.store.lake.Changes.new_files`):
    what a statement reaches in a state that only added rows to one it reached files in before
    is those files and these (a plain metadata read, which spares the lake's first scan of an
    inlined table in a new connection, about 40 ms)."""
    paths: set[str] = set()
    for scan in plans:
        types = key_types(scan.table)
        conditions, params = _conditions(list(scan.conditions), types)
        needles = verbatim_needles(scan.conditions, types)
        # a test of the keys' text first (see verbatim_needles): 15-25 ms → 6-12 ms at 25,000 files
        tests = [f"(NOT {HOLDS} OR {' OR '.join([HOLDS] * len(pairs))})" for _, pairs in needles]  # pragma: no mutate
        prefilter = " AND ".join(tests) or "true"  # pragma: no mutate  (SQL, in any case)
        sql = statement("reached_new_files").format(inlined=new_files, conditions=f"({prefilter}) AND {conditions}")
        texts = [text for lead, pairs in needles for text in (lead, *pairs)]
        paths.update(con.execute(sql, [folder, since, until, scan.table, *texts, *params]).fetchone()[0])
    return frozenset(paths)


# Text written in JSON by json.dumps exactly as it is (nothing in it escaped, by any JSON writer).
VERBATIM = re.compile(r"[ !#-.0-\[\]-~]*")


def verbatim_needles(usable: tuple[Condition, ...], types: dict[str, str]) -> list[tuple[str, list[str]]]:
    """For a test of a file's keys as text (no JSON parsed) that every file the conditions keep
    passes: for each text key compared for equality with constants written verbatim, the
    ``"key": "`` that starts its value and each ``"key": "constant"``; a file's keys must hold one
    of the latter or not the former. ``runs.py`` writes keys with ``json.dumps``, whose ``"key": "``
    is a key with a text value (a quote inside a text value is escaped); a file whose keys another
    writer wrote has none of it, and is tested by the conditions alone."""
    needles = []
    for condition in usable:
        if (types.get(condition.key) != "VARCHAR" or condition.op not in ("=", "IN") or not condition.strings
                or not IDENTIFIER.fullmatch(condition.key)
                or not all(VERBATIM.fullmatch(text) for text in condition.constants)):
            continue
        lead = f'"{condition.key}": "'
        needles.append((lead, [f'{lead}{text}"' for text in condition.constants]))
    return needles


def _conditions(usable: list[Condition], types: dict[str, str]) -> tuple[str, list]:
    """The conditions of the ``reached_files`` statements, and their parameters: a file stays
    unless a condition is false for its key (a missing key or one that does not cast is NULL,
    which leaves the file in); a condition DuckDB may not compare exactly is left out
    (:func:`exact`)."""
    clauses, params = [], []
    for condition in usable:
        kind = types[condition.key]
        if not exact(condition, kind):
            continue
        key = f"TRY_CAST(json_extract_string(keys, ?) AS {kind})"
        values = ", ".join(f"TRY_CAST(? AS {kind})" for _ in condition.constants)
        clauses.append(f"({key} {condition.op} ({values})) IS NOT FALSE")  # an IN list needs the parentheses
        params += [f'$."{condition.key}"', *condition.constants]
    return " AND ".join(clauses) or "true", params  # pragma: no mutate  (SQL: any case)


class Plans:
    """Statements' plans (:func:`plan`), kept across the snapshots of one
    store: a plan holds for every state of the catalog (at worst a changed view makes a reader too
    narrow, and the statement runs again on every file)."""

    def __init__(self, size: int = MAX_REACHES):
        self._size, self._lock, self._plans = size, threading.Lock(), OrderedDict()

    def get(self, key: tuple):
        """(the plan, whether it was read off the statement as one plain scan of one fact
        table: :func:`one_scan_plan`), or UNPLANNED."""
        with self._lock:
            if key not in self._plans:
                return UNPLANNED
            self._plans.move_to_end(key)
            return self._plans[key]

    def put(self, key: tuple, plan, one_scan: bool) -> None:
        with self._lock:
            self._plans[key] = (plan, one_scan)
            while len(self._plans) > self._size:
                self._plans.popitem(last=False)


UNPLANNED = object()
