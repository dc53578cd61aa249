"""Every benchmark of the project in one run, one JSON file.

Each benchmark is a script in ``bench/`` that measures quanta-db against its reference way in the
same run and prints one JSON line per measurement; the suite runs them (in subprocesses, so one
benchmark's memory does not weigh on the next) at the real shapes on a GPU, or at small shapes
with ``--quick``, collects their lines into ``--out`` and prints one summary line each.

    python bench/suite.py --device cuda --out results.json          # real shapes, one H100
    python bench/suite.py --device cpu --quick --out results.json   # small shapes, < 2 minutes

A benchmark a later issue adds registers itself in ``BENCHMARKS``: its script, then the
arguments of the full and of the quick run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent

# name: (script, full-shape arguments, quick arguments)
BENCHMARKS: dict[str, tuple[str, list[str], list[str]]] = {
    "losses": ("losses.py",
               ["--shapes", "pythia-70m,pythia-160m,pythia-410m,pythia-1.4b", "--dtypes", "float32,bfloat16",
                "--n-docs", "768", "--doc-len", "512", "--reference-docs", "64"],
               ["--shapes", "pythia-70m", "--n-docs", "4", "--doc-len", "128"]),
    "quanta": ("quanta.py",
               ["--shape", "pythia-70m", "--n-tokens", "10000", "--doc-len", "1024", "--tokens-per-doc", "4",
                "--exact-tokens", "2000", "--reference-tokens", "256"],
               ["--n-tokens", "48", "--doc-len", "128", "--tokens-per-doc", "4", "--reference-block", "16"]),
    "sae": ("sae.py",
            ["--shape", "pythia-70m", "--d-sae", "32768", "--layer", "3", "--n-tokens", "2000000",
             "--reference-tokens", "16384", "--dtype", "bfloat16", "--density", "0.16,0.005", "--profile"],
            ["--n-tokens", "8192", "--reference-tokens", "4096"]),
    "universality": ("universality.py",
                     ["--shape-a", "pythia-70m", "--shape-b", "pythia-160m", "--layer-a", "3", "--layer-b", "6",
                      "--d-sae", "32768", "--n-tokens", "100000", "--metric-pairs", "4096"],
                     ["--d-sae", "512", "--n-tokens", "4096", "--reference-tokens", "2048", "--permutations", "100",
                      "--reference-permutations", "5", "--metric-pairs", "128"]),
    "trajectories": ("trajectories.py",
                     ["--models", "8", "--checkpoints", "154", "--tokens", "262144", "--reference-tokens", "4096",
                      "--components", "10", "--sparse-components", "5"],
                     ["--models", "2", "--checkpoints", "10", "--tokens", "4096", "--reference-tokens", "512",
                      "--components", "2", "--sparse-components", "2"]),
    "heads": ("heads.py", ["--shapes", "pythia-70m,pythia-410m", "--seq-len", "1024", "--batch", "8"],
              ["--seq-len", "64", "--batch", "2", "--repeats", "1"]),
    "serve": ("serve.py", [], ["--rows", "200000", "--requests", "10", "--clients", "2", "--seconds", "2"]),
    "sql": ("sql.py", ["--models", "8", "--steps", "154", "--tokens", "100000"],
            ["--models", "2", "--steps", "3", "--tokens", "20000", "--repeats", "1"]),
    "catalog": ("catalog.py", [], ["--sizes", "300,1000", "--repeats", "2", "--commits-under-readers", "5"]),
    "baselines": ("baselines.py", ["--n-tokens", "1000000", "--d", "512", "--k", "256", "--batch", "65536"],
                  ["--n-tokens", "20000", "--d", "64", "--k", "32", "--batch", "8192", "--repeats", "1"]),
    "scaleout": ("scaleout.py", ["--shape", "pythia-410m", "--n-docs", "2048", "--doc-len", "1024"],
                 ["--n-docs", "16", "--doc-len", "128"]),
}
TAKES_DEVICE = {"losses", "quanta", "sae", "universality", "trajectories", "heads", "scaleout", "baselines"}


def run(name: str, device: str, quick: bool, timeout_s: float) -> dict:
    script, full, small = BENCHMARKS[name]
    command = [sys.executable, str(BENCH / script), *(small if quick else full)]
    if name in TAKES_DEVICE:
        command += ["--device", device]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"benchmark": name, "command": command, "ok": False, "error": f"timed out after {timeout_s:.0f} s",
                "seconds": round(time.perf_counter() - start, 1), "results": []}
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    error = None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["failed"])[-1]
    return {"benchmark": name, "command": command[1:], "ok": done.returncode == 0 and bool(results), "error": error,
            "seconds": round(time.perf_counter() - start, 1), "results": results}


def summary(entry: dict) -> str:
    if not entry["ok"]:
        return f"{entry['benchmark']}: FAILED ({entry['error']})"
    parts = []
    for result in entry["results"]:
        ratios = {k: v for k, v in result.items() if k.startswith("ratio") or k == "p50_ratio"}
        label = (result.get("shape") or result.get("shapes") or result.get("query") or result.get("analysis")
                 or (f"{result['files']} files" if "files" in result else ""))
        if "dtype" in result:
            label = f"{label} {result['dtype']}"
        parts.append(f"{label}: " + ", ".join(f"{k} {v}" for k, v in ratios.items()))
    return f"{entry['benchmark']} ({entry['seconds']} s): " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="Small shapes (CPU, a couple of minutes).")
    parser.add_argument("--only", help="Comma-separated benchmark names (default: all).")
    parser.add_argument("--timeout-s", type=float, default=900.0, help="Per benchmark.")
    parser.add_argument("--out", default="results.json")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})")
    entries = []
    for name in names:
        entries.append(run(name, args.device, args.quick, args.timeout_s))
        print(summary(entries[-1]), flush=True)
    Path(args.out).write_text(json.dumps({"device": args.device, "quick": args.quick, "benchmarks": entries}, indent=1))
    if not all(e["ok"] for e in entries):
        sys.exit(1)


if __name__ == "__main__":
    main()
