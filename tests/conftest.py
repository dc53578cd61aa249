"""Shared fixtures: inputs the project builds itself (no network), fresh stores, and stores
with losses several test modules start from (helpers.py holds the shared functions)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from quanta_db.demo import toy_corpus as toy
from quanta_db.demo import toy_models
from quanta_db.store.store import Store
from tests.helpers import POSTGRES_ENV, catalog_backends, drop_postgres_stores, fresh_store, ingest_toy_corpus
from tests.mutation_state import KILLERS, MUTANT_MARK, STATS, mutated_function

# Whole modules that start processes, servers or whole demo builds.
SLOW_MODULES = {"test_concurrency", "test_reproducible", "test_run_identities", "test_packaging", "test_serve",
                "test_sql_walls"}
# A test that uses one of these runs a model (or reads what one wrote).
MODEL_FIXTURES = {"toy_model", "losses_store", "hostile_fit", "sae_store", "cluster_store"}


# Every test that makes stores runs once per catalog backend (tests/helpers.py: catalog_backends).
# (Module- and session-scoped stores cannot depend on a per-test parameter: those fixtures take
# their own backend parameter, see tests/test_sql_walls.py.)
STORE_FIXTURES = {"store", "tmp_path"}
OWN_BACKEND_FIXTURES = {"walled_store"}  # module-scoped stores parametrized by backend themselves
# Under mutmut, MUTANT_UNDER_TEST names the mutant (MUTANT_MARK in it) and the tests run from the
# folder that holds its statistics (STATS: per-test durations) and KILLERS (tests that killed).
QUICK_NAMING_TEST_SECONDS = 10.0  # a test naming the mutated function goes early only if quick


def pytest_configure(config) -> None:
    """libpq reads the test database's password from PGPASSWORD in every connection of the
    session, whichever fixture made the store it belongs to; cores shared between workers."""
    url = os.environ.get(POSTGRES_ENV)
    if url and urlsplit(url).password:
        os.environ.setdefault("PGPASSWORD", urlsplit(url).password)
    _share_the_cores(config)


def _share_the_cores(config) -> None:
    """Under pytest-xdist, each worker's torch and BLAS (and every process it starts: jobs, Ray
    and SLURM workers inherit the variables) take their share of the cores. With every worker's OpenMP
    threads on every core, the waiting ones spin on cores the others need: the model tests took
    1.46x as long on 2 cores with 2 workers (156 s against 107 s)."""
    workers = getattr(config, "workerinput", {}).get("workercount")
    if not workers or "OMP_NUM_THREADS" in os.environ:
        return
    threads = max(1, len(os.sched_getaffinity(0)) // int(workers))
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    import threadpoolctl  # scikit-learn's: numpy's BLAS and OpenMP in this process
    import torch

    threadpoolctl.threadpool_limits(threads)
    torch.set_num_threads(threads)


def pytest_report_header() -> str:
    hint = "" if os.environ.get(POSTGRES_ENV) else f" (set {POSTGRES_ENV} to test the PostgreSQL catalog too)"
    return f"catalog backends: {', '.join(catalog_backends())}{hint}"


# On PostgreSQL run the tests of the store itself (commits, lineage, concurrency, SQL walls,
# clients, serve, migrations, bad inputs); the tests of each result kind's computation run there
# too with QUANTA_DB_TEST_POSTGRES_ALL=1 (they pass; CI leaves them to the local catalog for time).
STORE_MODULES = {"test_api", "test_bad_inputs", "test_catalog_doubles", "test_catalog_rebase", "test_cli",
                 "test_concurrency", "test_corpus", "test_direct", "test_expectations", "test_kinds", "test_lineage",
                 "test_migrations", "test_own_reads", "test_reach", "test_reach_metadata", "test_runs",
                 "test_sandbox", "test_serve", "test_snapshots", "test_splits", "test_sql_walls", "test_store_core",
                 "test_views"}


def _on_postgres(module: str, fixturenames) -> bool:
    if os.environ.get(f"{POSTGRES_ENV}_ALL"):
        return True
    return module in STORE_MODULES and not MODEL_FIXTURES & set(fixturenames)


def pytest_generate_tests(metafunc) -> None:
    used = set(metafunc.fixturenames)
    if STORE_FIXTURES & used and not OWN_BACKEND_FIXTURES & used and "catalog_backend" not in used:
        metafunc.fixturenames.insert(0, "catalog_backend")  # first: before any fixture makes a store
    if "catalog_backend" in metafunc.fixturenames:
        backends = catalog_backends()
        module = metafunc.module.__name__.rpartition(".")[2]
        if not _on_postgres(module, metafunc.fixturenames):
            backends = backends[:1]
        metafunc.parametrize("catalog_backend", backends, indirect=True)


@pytest.fixture
def catalog_backend(request, monkeypatch) -> str:
    """The catalog new stores get in this test: ``QUANTA_DB_CATALOG`` (what ``quanta-db init``
    reads) names the PostgreSQL database for the postgresql parameter, also in child processes."""
    from quanta_db.store.lake import CATALOG_ENV

    if request.param == "postgresql":
        monkeypatch.setenv(CATALOG_ENV, os.environ[POSTGRES_ENV])
    else:
        monkeypatch.delenv(CATALOG_ENV, raising=False)
    yield request.param
    if request.param == "postgresql" and "tmp_path" in request.fixturenames:
        drop_postgres_stores(request.getfixturevalue("tmp_path"))


def pytest_collection_modifyitems(items) -> None:
    """``slow`` and ``browser`` marks, decided in one place (see SLOW_MODULES, MODEL_FIXTURES)."""
    for item in items:
        if item.module.__name__.rpartition(".")[2] in SLOW_MODULES or MODEL_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)
        if "headless_page" in getattr(item.function, "__code__", None).co_names:
            item.add_marker(pytest.mark.browser)
    if MUTANT_MARK in os.environ.get("MUTANT_UNDER_TEST", ""):
        items.sort(key=_mutant_test_order(os.environ["MUTANT_UNDER_TEST"]))


def _mutant_test_order(mutant: str):
    """Under mutmut, a mutant's covering tests run until the first failure (``-x``) in the order
    they come, and most mutants are killed by some test, often the one that killed the other
    mutants of the same function: the tests that killed most of them (``KILLERS``) go first,
    then the quick tests that name the mutated function (or, for ``__init__``, its class), then the
    rest by recorded duration. A killed mutant then costs its likeliest killing test rather than
    every quicker test before it (unknown tests last, in their collected order: ``sort`` is stable).
    The order only changes what a killed mutant costs, never whether it is killed: a survivor runs
    every covering test either way."""
    try:
        seconds = json.loads(Path(STATS).read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError):
        seconds = {}
    kills = _kills_by_test(mutated_function(mutant))
    named = _mutated_name(mutant)

    def order(item) -> tuple[int, bool, float]:
        took = seconds.get(item.nodeid, float("inf"))
        names = getattr(getattr(item, "function", None), "__code__", None)
        naming = took < QUICK_NAMING_TEST_SECONDS and names is not None and named in names.co_names
        return -kills.get(item.nodeid, 0), not naming, took

    return order


def _kills_by_test(function: str) -> Counter:
    """How many mutants of ``function`` each test killed so far (``KILLERS``)."""
    try:
        lines = Path(KILLERS).read_text().splitlines()
    except OSError:
        return Counter()
    pairs = (line.partition("\t") for line in lines)
    return Counter(test for killed, _, test in pairs if killed == function and test)


def pytest_runtest_logreport(report) -> None:
    """Under mutmut, the test that failed (killed the mutant) is added to ``KILLERS``: one
    short line appended, whole, so the two runners writing at once never mix their lines."""
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    if report.failed and MUTANT_MARK in mutant:
        with open(KILLERS, "a") as killers:
            killers.write(f"{mutated_function(mutant)}\t{report.nodeid}\n")


def _mutated_name(mutant: str) -> str:
    """``quanta_db.store.querying.x__execute__mutmut_47`` → ``_execute``;
    ``...store.xǁStoreǁquery__mutmut_3`` → ``query``; ``...xǁRunǁ__init____mutmut_1`` → ``Run``."""
    function = mutated_function(mutant).rpartition(".")[2]
    if function.startswith("x\u01c1"):
        _, owner, method = function.split("\u01c1")
        return owner if method == "__init__" else method
    return function.removeprefix("x_")


def _built(tmp_path_factory, name: str, build) -> Path:
    """A folder ``build(folder)`` fills. Mutation testing starts a test session per mutant, so
    there (or with ``QUANTA_DB_TEST_CACHE`` set) the folder is built once and reused, keyed by the
    demo builders' source: they are deterministic (tests/test_reproducible.py)."""
    cache = os.environ.get("QUANTA_DB_TEST_CACHE") or (
        str(Path(tempfile.gettempdir()) / f"quanta-db-test-cache-{os.getuid()}") if "MUTANT_UNDER_TEST" in os.environ
        else None)
    if not cache:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    sources = hashlib.sha256(b"".join(Path(f).read_bytes() for f in (toy.__file__, toy_models.__file__, __file__)))
    folder = Path(cache) / f"{name}-{sources.hexdigest()[:16]}"
    if not folder.is_dir():
        Path(cache).mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=cache))
        build(staging)
        try:
            staging.rename(folder)
        except OSError:  # another session built it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def _build_toy_inputs(work: Path) -> None:
    records = _toy_records()
    toy.write_jsonl(records, work / "corpus.jsonl")
    toy.train_tokenizer([r["text"] for r in records], work / "tokenizer", vocab_size=400)


def _toy_records() -> list[dict]:
    records = toy.stdlib_documents(40, max_chars=1500)
    records.insert(3, {"text": "", "meta": {"pile_set_name": toy.SUBSET_SOURCE}})  # an empty document
    return records


@pytest.fixture(scope="session")
def toy_inputs(tmp_path_factory) -> dict:
    """A Pile-format JSONL corpus from the standard library and a BPE tokenizer trained on it."""
    work = _built(tmp_path_factory, "toy", _build_toy_inputs)
    return {"corpus": work / "corpus.jsonl", "tokenizer": work / "tokenizer", "records": _toy_records(), "dir": work}


@pytest.fixture(scope="session")
def _store_templates(tmp_path_factory) -> dict:
    """Stores built once a session and copied for each test that asks for one (a copied store is
    the same store: its lake records files relative to its folder; tests/helpers.py: fresh_store)."""
    templates = {"folder": tmp_path_factory.mktemp("templates")}
    yield templates
    if os.environ.get(POSTGRES_ENV):
        drop_postgres_stores(templates["folder"])


@pytest.fixture
def store(tmp_path, catalog_backend, _store_templates) -> Store:
    return fresh_store(_store_templates, "empty", tmp_path / "store", catalog_backend, Store.init)


@pytest.fixture
def corpus_store(tmp_path, catalog_backend, _store_templates, toy_inputs) -> Store:
    return fresh_store(_store_templates, "corpus", tmp_path / "store", catalog_backend,
                        lambda root: ingest_toy_corpus(Store.init(root), toy_inputs))


@pytest.fixture
def store_snapshot():
    from tests.helpers import snapshot

    return snapshot


@pytest.fixture(scope="session")
def toy_model(toy_inputs, tmp_path_factory) -> dict:
    """A tiny GPT-NeoX trained for a few steps, saved as step0/, step4/ and step8/ with its tokenizer."""
    from transformers import AutoTokenizer

    def build(folder: Path) -> None:
        tok = AutoTokenizer.from_pretrained(str(toy_inputs["tokenizer"]))
        sequences = [np.array(tok.encode(r["text"]), dtype=np.int64) for r in toy_inputs["records"]]
        config = toy_models.gpt_neox_config(len(tok), d_model=32, n_layers=2, n_heads=4, n_ctx=256)
        toy_models.train_checkpoints(config, sequences, folder / "tiny", save_steps=[0, 4, 8],
                                     tokenizer_dir=toy_inputs["tokenizer"], seq_len=64)

    return {"dir": _built(tmp_path_factory, "model", build) / "tiny", "steps": [0, 4, 8]}


@pytest.fixture
def losses_store(tmp_path, catalog_backend, _store_templates, toy_inputs, toy_model):
    """Two 'models' over steps 0, 4, 8 of the toy model: float32 and bfloat16 losses differ."""
    from quanta_db.results.losses.job import ingest_losses

    def build(root: Path) -> Store:
        store = ingest_toy_corpus(Store.init(root), toy_inputs)
        ingest_losses(store, str(toy_model["dir"]), "toy", name="small", steps=[0, 4, 8], progress=False)
        ingest_losses(store, str(toy_model["dir"]), "toy", name="large", steps=[0, 4, 8], dtype="bfloat16",
                      progress=False)
        return store

    return fresh_store(_store_templates, "losses", tmp_path / "store", catalog_backend, build)


@pytest.fixture
def hostile_fit(store, toy_inputs, tmp_path):
    """Two 'models' (float32 / bfloat16 losses) over four random checkpoints, on a corpus whose
    vocabulary has whole-tag tokens."""
    from transformers import AutoTokenizer

    from quanta_db.demo.toy_corpus import write_jsonl
    from quanta_db.demo.toy_models import gpt_neox_config, random_model
    from quanta_db.results.corpus.job import ingest_corpus
    from quanta_db.results.losses.job import ingest_losses
    from quanta_db.results.trajectories.job import ingest_trajectories

    tokenizer = AutoTokenizer.from_pretrained(str(toy_inputs["tokenizer"]))
    tokenizer.add_tokens(["<b>bold</b>", "<img src=x onerror=alert(1)>"])
    models = tmp_path / "random"
    for step in range(6):
        tokenizer.save_pretrained(models / f"step{step}")
        random_model(gpt_neox_config(len(tokenizer), 32, 2, 4, n_ctx=256), seed=step).save_pretrained(
            models / f"step{step}")
    text = "<b>bold</b> then <img src=x onerror=alert(1)> and <script>alert(2)</script> "
    records = [{"text": text * 3 + r["text"][:200], "meta": {"pile_set_name": "x"}} for r in toy_inputs["records"][:8]]
    ingest_corpus(store, write_jsonl(records, tmp_path / "h.jsonl"), "hostile", str(models / "step0"), max_tokens=64,
                  progress=False)
    for name, dtype in (("<i>small</i>", "float32"), ("large", "bfloat16")):
        ingest_losses(store, str(models), "hostile", name=name, steps=list(range(6)), dtype=dtype, progress=False)
    fit = ingest_trajectories(store, ["<i>small</i>", "large"], "hostile", components=4, smooth=(0.0, 0.0),
                              device="cpu")
    return store, fit.run_id
