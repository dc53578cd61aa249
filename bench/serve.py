"""Benchmark: a saved analysis served over HTTP against the same SQL run directly in DuckDB.

A store with a synthetic ``token_losses`` of ``--rows`` rows (10M by default: 4 models × 10
checkpoints × 250,000 tokens) is served by ``quanta-db serve`` (uvicorn, in this process);
``--requests`` sequential requests of ``/api/views/loss_curve`` give the p50 / p95 latency, and
``--clients`` concurrent clients for ``--seconds`` the requests/s. Direct: the same saved view
through a read-only DuckDB connection to the catalog, timed the same way. Target: served p50
within 1.5x of direct plus 5 ms. Prints one JSON line.

    python bench/serve.py [--rows 10000000] [--requests 50] [--clients 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quanta_db.serve.app import live_server  # noqa: E402
from quanta_db.store.store import Store  # noqa: E402


def synthetic_store(folder: Path, rows: int) -> Store:
    store = Store.init(folder / "store")
    models, steps = 4, 10
    per = rows // (models * steps)
    rng = np.random.default_rng(0)
    with store.begin_run("bench", {"rows": rows}) as run:
        for m in range(models):
            for step in range(steps):
                run.write("token_losses", pa.table({
                    "model": pa.repeat(f"model-{m}", per), "step": pa.repeat(step * 1000, per),
                    "corpus": pa.repeat("synthetic", per), "doc_id": np.arange(per) // 512,
                    "pos": (np.arange(per) % 512 + 1).astype(np.int32),
                    "loss_nats": rng.gamma(2.0, 1.5, per).astype(np.float32), "run_id": pa.repeat(run.run_id, per)}))
        run.commit()
    return store


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1000 * s for s in seconds)
    return {"p50_ms": round(statistics.median(ms), 2), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 2)}


def main() -> None:
    import httpx

    from quanta_db.store.catalog import owner_connection

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = synthetic_store(Path(folder), args.rows)
        direct = []
        with owner_connection(store.root) as con:
            con.sql("SELECT * FROM loss_curve").fetchall()  # warm-up
            for _ in range(args.requests):
                start = time.perf_counter()
                con.sql("SELECT * FROM loss_curve").fetchall()
                direct.append(time.perf_counter() - start)
        served = []
        with live_server(store.root, time_limit_ms=60_000) as url, httpx.Client(base_url=url, timeout=120) as http:
            http.get("/api/views/loss_curve").raise_for_status()  # warm-up (takes the catalog copy)
            for _ in range(args.requests):
                start = time.perf_counter()
                http.get("/api/views/loss_curve").raise_for_status()
                served.append(time.perf_counter() - start)
            done, stop, failures = [], threading.Event(), []

            def client():
                with httpx.Client(base_url=url, timeout=120) as own:
                    while not stop.is_set():
                        response = own.get("/api/views/loss_curve")
                        (done if response.status_code == 200 else failures).append(1)

            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            time.sleep(args.seconds)
            stop.set()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - start
    direct_p, served_p = percentiles(direct), percentiles(served)
    print(json.dumps({
        "benchmark": "serve", "rows": args.rows, "query": "loss_curve",
        "direct": direct_p, "served": served_p, "concurrent_clients": args.clients,
        "requests_per_s": round(len(done) / elapsed, 1), "failed_requests": len(failures),
        "p50_ratio": round(served_p["p50_ms"] / direct_p["p50_ms"], 2),
        "target_met": served_p["p50_ms"] <= 1.5 * direct_p["p50_ms"] + 5,
    }))


if __name__ == "__main__":
    main()
