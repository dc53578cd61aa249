"""A DOUBLE in a catalog table reads back exactly as the catalog keeps it: the lake writes
catalog rows as SQL text, and DuckDB reads a 16-17 digit decimal literal back up to one unit in
the last place off, so the store rounds to 15 significant digits first (``lake.storable``)."""

from __future__ import annotations

import math
import random

from quanta_db.store.lake import storable

# 0.9021659504395827 came back as 0.9021659504395828 before the rounding; the rest cover the
# magnitudes DuckDB prints as decimals and those it prints in scientific notation.
KNOWN_OFF = 0.9021659504395827


def _doubles(n: int) -> list[float]:
    rng = random.Random(0)
    values = [KNOWN_OFF, 0.0, -0.0, 5e-324, 1.7976931348623157e308, 1 / 3, -2 / 3]
    values += [rng.uniform(-1, 1) * 10 ** rng.uniform(-30, 30) for _ in range(n)]
    return values


def test_catalog_doubles_read_back_as_stored_within_five_parts_in_1e15(store):
    values = _doubles(200)
    run = store.begin_run("test_doubles", {"n": len(values)})
    run.upsert("clusterings", [{
        "clustering": f"c{i}", "model": "m", "step": 0, "corpus": "c", "similarity_run": run.run_id,
        "similarity_method": "exact", "n_tokens": 1, "n_clusters": 1, "params": "{}",
        "similarity_seconds": value, "clustering_seconds": None, "run_id": run.run_id,
    } for i, value in enumerate(values)], key=["clustering"])
    run.commit()
    rows = store.query_arrow("SELECT clustering, similarity_seconds FROM clusterings").to_pylist()
    got = {row["clustering"]: row["similarity_seconds"] for row in rows}
    for i, value in enumerate(values):
        kept = got[f"c{i}"]
        assert kept == storable(value), (value, kept)
        assert math.copysign(1, kept) == math.copysign(1, value)
        assert abs(kept - value) <= 5e-15 * abs(value) or (value == kept == 0), value
    assert sum(storable(v) != v for v in values) > 100  # the rounding was exercised


def test_storable_leaves_other_values_and_non_finite_floats_alone():
    assert storable("0.12345678901234567") == "0.12345678901234567"
    assert storable(3) == 3 and storable(None) is None
    assert math.isnan(storable(math.nan)) and storable(math.inf) == math.inf
    assert storable(0.25) == 0.25


def test_an_upgrade_rounds_doubles_as_a_commit_does():
    import duckdb

    from quanta_db.store.legacy import _storable_sql

    values = _doubles(2000) + [math.inf, -math.inf, -1.7976931348623157e308, 9.999999999999999e307]
    with duckdb.connect() as con:
        con.execute("CREATE TABLE t (i INTEGER, v DOUBLE)")
        con.executemany("INSERT INTO t VALUES (?, ?)", list(enumerate(values)))
        got = dict(con.execute(f"SELECT i, {_storable_sql('v')} FROM t").fetchall())
        assert math.isnan(con.execute(f"SELECT {_storable_sql('v')} FROM (SELECT 'nan'::DOUBLE AS v)").fetchone()[0])
    assert [got[i] for i in range(len(values))] == [storable(v) for v in values]
