"""Shared fixtures: inputs the project builds itself (no network) and fresh stores."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from quanta_db.demo import toy_corpus as toy
from quanta_db.demo import toy_models
from quanta_db.store.store import Store


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


@pytest.fixture
def store(tmp_path) -> Store:
    return Store.init(tmp_path / "store")


@pytest.fixture
def corpus_store(store, toy_inputs) -> Store:
    from quanta_db.results.corpus.job import ingest_corpus

    ingest_corpus(store, toy_inputs["corpus"], "toy", str(toy_inputs["tokenizer"]), max_tokens=128, progress=False)
    return store


def snapshot(store: Store) -> dict:
    """Everything a reader can see, plus every file under tables/: equal iff nothing changed."""
    from quanta_db.store.catalog import connect
    from quanta_db.store.registry import catalog_tables, fact_tables

    state = {}
    with connect(store.root, read_only=True) as con:
        for table in catalog_tables():
            state[table] = sorted(map(repr, con.execute(f'SELECT * FROM "{table}"').fetchall()))
        for table in fact_tables():
            state[f"view:{table}"] = sorted(map(repr, con.execute(f'SELECT * FROM "{table}"').fetchall()))
    tables = store.root / "tables"
    state["files"] = {
        p.relative_to(store.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(tables.rglob("*")) if p.is_file()
    }
    return state


@pytest.fixture
def store_snapshot():
    return snapshot


def raw_table(store: Store, table: str):
    """All Parquet files under tables/<table> read with pyarrow, bypassing the catalog."""
    import pandas as pd
    import pyarrow.parquet as pq

    files = sorted((store.root / "tables" / table).rglob("*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def staging_entries(store: Store) -> list[Path]:
    staging = store.root / "staging"
    return sorted(staging.iterdir()) if staging.exists() else []


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


@contextmanager
def headless_page(url: str):
    """A page of Debian's Chromium (driven by Playwright) at ``url``, and the list its console
    errors and page errors collect into; skips when either is missing (fails on CI)."""
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if chromium is None or sync_playwright is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium and Playwright are required on CI (.ci/run installs them)")
        pytest.skip("chromium or playwright not installed")
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        try:
            yield page, errors
        finally:
            browser.close()
