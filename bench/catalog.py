"""Benchmark: the store's catalog at checkpoint-suite scale (issue 22), against plain DuckDB over
the same file list, in one run.

A store is filled with ``token_losses`` files of ``--rows`` rows, one (model, step, corpus)
partition each, as a suite of checkpoints makes them: runs of up to ``--fill-run`` files, then
single-file commits as ``ingest losses`` makes them. At each size of ``--sizes`` it measures:

- ``commit_s`` / ``commit_p90_s``: one more single-file commit (median and 90th percentile of 21,
  or of ``--repeats`` when more);
- ``fresh_point_s``: a new process opens the store and queries one partition (one model, step
  and corpus) as user SQL (``Store.query``, confined to the store's files);
  ``fresh_plain_point_s``: the same through a plain read connection to the lake;
- ``warm_point_s``: the same query again in a process that has queried the store before (its
  confined copy of the catalog is kept until a commit lands);
- ``aggregate_s`` / ``plain_aggregate_s``: a group-by over every row, through the store and
  through a plain in-memory DuckDB reading the same files (``read_parquet([...])``), and their ratio;
- ``max_read_s`` / ``max_read_wait_s``: the slowest of the point queries a reader process polls
  with (``Store.query``) while ``--commits-under-readers`` commits go on, and how much longer it
  took than the reader's median query with no commit going on (the time it waited on a commit,
  and to see it); ``served_max_read_s`` / ``served_max_read_wait_s``: the same for a reader
  answering as ``quanta-db serve`` does, here a store opened with ``background_refresh=True``
  (the next confined copy taken in the background, so a commit shows up a copy's time later);
  ``plain_max_read_s`` / ``plain_max_read_wait_s``: the same for a reader opening a plain read
  connection to the lake for each query.

Targets (issue 22, at 25k files): commit ≤ 0.2 s and flat in the file count, fresh point query
≤ 0.2 s, warm ≤ 0.1 s, aggregate within 1.2x of plain DuckDB, no read waiting more than 100 ms.
One JSON line per size.

    python bench/catalog.py                                   # 1k, 5k, 25k files
    python bench/catalog.py --sizes 500,2000 --commits-under-readers 10   # quick (CI)
    python bench/catalog.py --catalog postgresql://USER@HOST/DATABASE     # the catalog on PostgreSQL
    python bench/catalog.py --sizes 25000 --reader-cpu 1   # readers on CPU 1, commits on the others

With ``--reader-cpu`` a reader shares no core with the commits, so its wait is what it waits on
(a lock, a copy not yet published), not the CPU time a commit takes from it; only the read-wait
columns are meant to be compared across the two modes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from quanta_db.store.store import Store  # noqa: E402

CORPORA = 23  # 22 Pile subsets and DM mathematics
STEPS = 154   # Pythia's checkpoints


def partition(index: int) -> dict:
    """The index-th (model, step, corpus) of a suite: corpora fastest, then steps, then models."""
    corpus, rest = index % CORPORA, index // CORPORA
    return {"model": f"pythia-{rest // STEPS}", "step": (rest % STEPS) * 1000, "corpus": f"subset-{corpus:02d}"}


def losses(keys: dict, rows: int, run_id: str, rng) -> pa.Table:
    return pa.table({
        "model": pa.repeat(keys["model"], rows), "step": pa.repeat(keys["step"], rows),
        "corpus": pa.repeat(keys["corpus"], rows), "doc_id": np.arange(rows, dtype=np.int64) // 50,
        "pos": (np.arange(rows) % 50 + 1).astype(np.int32), "loss_nats": rng.gamma(2.0, 1.5, rows).astype(np.float32),
        "run_id": pa.repeat(run_id, rows)})


class Filler:
    """Commits partitions in order; ``count`` is how many files the store holds."""

    def __init__(self, store: Store, rows: int):
        self.store, self.rows, self.count, self.rng = store, rows, 0, np.random.default_rng(0)

    def commit(self, n_files: int) -> float:
        """Commit the next ``n_files`` partitions as one run; seconds the commit took."""
        with self.store.begin_run("bench", {"first": self.count, "files": n_files}) as run:
            for index in range(self.count, self.count + n_files):
                run.write("token_losses", losses(partition(index), self.rows, run.run_id, self.rng))
            started = time.perf_counter()
            run.commit()
        self.count += n_files
        return time.perf_counter() - started

    def fill_to(self, size: int, per_run: int) -> None:
        while self.count < size:
            self.commit(min(per_run, size - self.count))


def point_sql(count: int) -> str:
    keys = partition(count // 2)
    return (f"SELECT avg(loss_nats) AS mean FROM token_losses WHERE model = '{keys['model']}' "
            f"AND step = {keys['step']} AND corpus = '{keys['corpus']}'")


AGGREGATE = "SELECT model, corpus, avg(loss_nats) AS mean, count(*) AS n FROM token_losses GROUP BY ALL"


COMMITS_MEASURED = 21


def timed(function, repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


# A child process's point query (prefix of READER and FRESH): ``how`` = "confined" is user SQL
# through Store.query, "served" user SQL as `quanta-db serve` answers it and a store opened with
# background_refresh=True (its confined copies of the catalog are taken in the background),
# "plain" a plain read connection to the lake.
QUERY = """
import importlib.util, sys, time
sys.path.insert(0, sys.argv[3])
from quanta_db.store import catalog
from quanta_db.store.store import Store
if importlib.util.find_spec("psycopg"):  # the PostgreSQL driver's import (0.1 s, once a process) is an import too
    import psycopg

SERVED = {}

def query(root, how, store=None):
    if how == "confined":
        (store or Store.open(root)).query_arrow(SQL)
    elif how == "served":  # Store.open(root, background_refresh=True) answers as serve does
        if root not in SERVED:
            SERVED[root] = Store.open(root, background_refresh=True)
        SERVED[root].query_arrow(SQL)
    else:
        with catalog.connect(root, read_only=True) as con:
            con.sql(SQL).fetchall()
"""

READER = QUERY + """
import json, os, statistics
from pathlib import Path
root, stop, how = sys.argv[1], Path(sys.argv[2]), sys.argv[4]
parent = os.getppid()  # a bench that is killed leaves no reader polling for ever
store = Store.open(root)

def latency():
    started = time.perf_counter()
    query(root, how, store)
    return time.perf_counter() - started

alone = statistics.median(latency() for _ in range(5))
print("ready", flush=True)
during = []
while not stop.exists() and os.getppid() == parent:
    during.append(latency())
print(json.dumps({"alone": alone, "max": max(during) if during else alone}))
"""


def read_waits(root: Path, filler: Filler, commits: int, how: str, reader_cpus: set[int] | None = None) -> dict:
    """A reader process (a notebook, say) polling with point queries while ``commits`` single-file
    commits run: its longest query, and its longest wait (that, less its median query alone).
    ``how`` = "confined": user SQL through ``Store.query`` (which takes a new confined copy of
    the catalog after each commit); "served": user SQL as ``serve`` answers it (the new copy is
    taken in the background); "plain": a new plain read connection to the lake per query."""
    stop = root.parent / "stop-reading"
    stop.unlink(missing_ok=True)
    code = READER.replace("SQL", repr(point_sql(filler.count)))
    reader = subprocess.Popen([sys.executable, "-c", code, str(root), str(stop), str(Path(__file__).parent.parent),
                               how], stdout=subprocess.PIPE, text=True, preexec_fn=_on_cpus(reader_cpus))
    try:
        reader.stdout.readline()  # "ready"
        for _ in range(commits):
            filler.commit(1)
    finally:
        stop.touch()
    latencies = json.loads(reader.communicate(timeout=600)[0].strip().splitlines()[-1])
    prefix = "" if how == "confined" else f"{how}_"
    return {f"{prefix}max_read_s": round(latencies["max"], 4),
            f"{prefix}max_read_wait_s": round(max(0.0, latencies["max"] - latencies["alone"]), 4)}


def _on_cpus(cpus: set[int] | None):
    """A ``preexec_fn`` that keeps a child process on ``cpus`` (None: no function, any CPU)."""
    return None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))


FRESH = QUERY + """
started = time.perf_counter()
query(sys.argv[1], sys.argv[2])
print(time.perf_counter() - started)
"""


def fresh_point_s(root: Path, sql: str, how: str, repeats: int) -> float:
    """A new process's first point query (imports excluded, the PostgreSQL driver's too), median of ``repeats`` processes:
    ``how`` = "confined": through ``Store.query`` (user SQL, confined to the store's files);
    "plain": through a plain read connection to the lake (what any DuckDB client attaching it does)."""
    code = FRESH.replace("SQL", repr(sql))
    return statistics.median(float(subprocess.run(
        [sys.executable, "-c", code, str(root), how, str(Path(__file__).parent.parent)],
        capture_output=True, text=True, check=True).stdout) for _ in range(repeats))


def measure(root: Path, filler: Filler, size: int, repeats: int, commits_under_readers: int,
            reader_cpus: set[int] | None = None) -> dict:
    # a commit is short and shares 2 cores with the machine's other work: more of them than queries
    commits_s = sorted(filler.commit(1) for _ in range(max(repeats, COMMITS_MEASURED)))
    commit_s, commit_p90_s = statistics.median(commits_s), commits_s[int(0.9 * (len(commits_s) - 1))]
    sql = point_sql(filler.count)
    fresh_s, fresh_plain_s = (fresh_point_s(root, sql, how, repeats) for how in ("confined", "plain"))
    warm = Store.open(root)
    warm.query_arrow(sql)  # this process's confined copy of the catalog is kept (quanta_db.store.snapshots)
    warm_s = timed(lambda: warm.query_arrow(sql), repeats)
    aggregate_s = timed(lambda: warm.query_arrow(AGGREGATE), repeats)
    paths = [str(p) for p in warm.committed_paths("token_losses")]
    plain = duckdb.connect()
    plain_s = timed(lambda: plain.sql(f"SELECT model, corpus, avg(loss_nats) AS mean, count(*) AS n "
                                      f"FROM read_parquet({paths!r}) GROUP BY ALL").fetchall(), repeats)
    return {"benchmark": "catalog", "files": filler.count, "target_files": size, "commit_s": round(commit_s, 4),
            "commit_p90_s": round(commit_p90_s, 4),
            "fresh_point_s": round(fresh_s, 4), "fresh_plain_point_s": round(fresh_plain_s, 4),
            "warm_point_s": round(warm_s, 4),
            "aggregate_s": round(aggregate_s, 4), "plain_aggregate_s": round(plain_s, 4),
            "ratio_aggregate": round(aggregate_s / plain_s, 2),
            **{key: value for how in ("confined", "served", "plain")
               for key, value in read_waits(root, filler, commits_under_readers, how, reader_cpus).items()},
            "commits_under_readers": commits_under_readers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000,25000", help="Comma-separated file counts to measure at.")
    parser.add_argument("--rows", type=int, default=100, help="Rows per file.")
    parser.add_argument("--fill-run", type=int, default=1000, help="Files per run while filling.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--commits-under-readers", type=int, default=100)
    parser.add_argument("--out-dir", help="Where the store is built [default: a temporary folder].")
    parser.add_argument("--catalog", help="postgresql://... database for the store's catalog [default: a local file].")
    parser.add_argument("--reader-cpu", type=int, help="Run the polling readers on this CPU and the commits on the others: "
                        "a reader's wait then shows what it waits on, not what it shares a core with.")
    args = parser.parse_args()
    reader_cpus = None if args.reader_cpu is None else {args.reader_cpu}
    if reader_cpus is not None:
        os.sched_setaffinity(0, os.sched_getaffinity(0) - reader_cpus)
    with tempfile.TemporaryDirectory(dir=args.out_dir) as folder:
        root = Path(folder) / "store"
        filler = Filler(Store.init(root, catalog_url=args.catalog), args.rows)
        for size in sorted(int(s) for s in args.sizes.split(",")):
            started = time.perf_counter()
            filler.fill_to(size, args.fill_run)
            fill_s = time.perf_counter() - started
            os.sync()  # the fill's writes flushed first: the measurements below do not pay for them
            line = measure(root, filler, size, args.repeats, args.commits_under_readers, reader_cpus)
            backend = "postgresql" if args.catalog else "duckdb"
            print(json.dumps({**line, "catalog": backend, "fill_s": round(fill_s, 1), "reader_cpu": args.reader_cpu}),
                  flush=True)


if __name__ == "__main__":
    main()
