"""Benchmark: saved analyses on a large synthetic ``token_losses`` against plain DuckDB over the
same Parquet files, in one run.

The store's own writer commits ``--models`` × ``--steps`` partitions of ``--tokens`` tokens each
(one run per model, like ``ingest losses``) and a ``bigram`` token filter. Each analysis runs
(a) through the store — its views list every committed file and cast the declared types — and
(b) in a plain in-memory DuckDB whose ``token_losses`` / ``token_filters`` are
``read_parquet`` globs over the same files, with the same saved-query definitions installed.
Target: the store within 1.5x of plain DuckDB. Prints one JSON line per analysis.

    python bench/sql.py                                  # 10M rows
    python bench/sql.py --models 8 --steps 154 --tokens 100000 --out-dir /big/disk   # ~123M rows
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quanta_db.store.catalog import owner_connection  # noqa: E402
from quanta_db.store.store import Store  # noqa: E402
from quanta_db.store.views import discover_saved_queries  # noqa: E402

ANALYSES = {
    "loss_curve": "SELECT * FROM loss_curve",
    "stepwise_difference": "SELECT step, avg(diff_nats) AS mean_diff FROM stepwise_difference WHERE model = 'model-0' "
                           "GROUP BY step ORDER BY step",
    "model_difference": "SELECT step, avg(diff_nats) AS mean_diff FROM model_difference('model-0', 'model-1') "
                        "GROUP BY step ORDER BY step",
    "loss_by_filter": "SELECT l.model, l.step, f.value AS in_bigram, avg(l.loss_nats) AS mean_loss FROM token_losses l "
                      "JOIN token_filters f USING (corpus, doc_id, pos) WHERE f.filter = 'bigram' GROUP BY ALL ORDER BY ALL",
    "one_document": "SELECT model, step, pos, loss_nats FROM token_losses WHERE doc_id = 7 ORDER BY ALL",
}
NEEDED = ("loss_curve", "stepwise_difference", "model_difference")


def build(root: Path, models: int, steps: int, tokens: int) -> Store:
    store = Store.init(root)
    rng = np.random.default_rng(0)
    doc_id, pos = np.arange(tokens) // 1024, (np.arange(tokens) % 1024 + 1).astype(np.int32)
    for m in range(models):
        with store.begin_run("bench", {"model": m}) as run:
            for s in range(steps):
                run.write("token_losses", pa.table({
                    "model": pa.repeat(f"model-{m}", tokens), "step": pa.repeat(s * 1000, tokens),
                    "corpus": pa.repeat("synthetic", tokens), "doc_id": doc_id, "pos": pos,
                    "loss_nats": rng.gamma(2.0, 1.5, tokens).astype(np.float32),
                    "run_id": pa.repeat(run.run_id, tokens)}))
            run.commit()
    with store.begin_run("bench", {"filters": True}) as run:
        run.write("token_filters", pa.table({"corpus": pa.repeat("synthetic", tokens), "doc_id": doc_id, "pos": pos,
                                             "filter": pa.repeat("bigram", tokens),
                                             "value": rng.random(tokens) < 0.2}))
        run.commit()
    return store


def timed(con, sql: str, repeats: int) -> float:
    con.sql(sql).fetchall()  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        con.sql(sql).fetchall()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def plain(root: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for table in ("token_losses", "token_filters"):
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{root}/tables/{table}/**/*.parquet', "
                    "hive_partitioning = false)")
    for query in discover_saved_queries():
        if query.name in NEEDED:
            con.execute(query.create_sql())
    return con


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=125_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out-dir", help="Where the synthetic store goes [default: a temporary folder].")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.out_dir) as folder:
        start = time.perf_counter()
        store = build(Path(folder) / "store", args.models, args.steps, args.tokens)
        build_s = time.perf_counter() - start
        rows = args.models * args.steps * args.tokens
        direct = plain(store.root)
        with owner_connection(store.root) as served:
            for name, sql in ANALYSES.items():
                ours, reference = timed(served, sql, args.repeats), timed(direct, sql, args.repeats)
                print(json.dumps({"benchmark": "sql", "analysis": name, "rows": rows, "files": args.models * args.steps,
                                  "store_s": round(ours, 3), "plain_duckdb_s": round(reference, 3),
                                  "ratio": round(ours / reference, 2), "build_s": round(build_s, 1)}), flush=True)


if __name__ == "__main__":
    main()
