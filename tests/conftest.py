"""Shared fixtures: inputs the project builds itself (no network) and fresh stores."""

from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from quanta_db.demo import toy_corpus as toy
from quanta_db.store.store import Store


@pytest.fixture(scope="session")
def toy_inputs(tmp_path_factory) -> dict:
    """A Pile-format JSONL corpus from the standard library and a BPE tokenizer trained on it."""
    work = tmp_path_factory.mktemp("toy")
    records = toy.stdlib_documents(40, max_chars=1500)
    records.insert(3, {"text": "", "meta": {"pile_set_name": toy.SUBSET_SOURCE}})  # an empty document
    corpus = toy.write_jsonl(records, work / "corpus.jsonl")
    tokenizer = toy.train_tokenizer([r["text"] for r in records], work / "tokenizer", vocab_size=400)
    return {"corpus": corpus, "tokenizer": tokenizer, "records": records, "dir": work}


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

    from quanta_db.demo.toy_models import gpt_neox_config, train_checkpoints

    tok = AutoTokenizer.from_pretrained(str(toy_inputs["tokenizer"]))
    sequences = [np.array(tok.encode(r["text"]), dtype=np.int64) for r in toy_inputs["records"]]
    config = gpt_neox_config(len(tok), d_model=32, n_layers=2, n_heads=4, n_ctx=256)
    out = tmp_path_factory.mktemp("model") / "tiny"
    train_checkpoints(config, sequences, out, save_steps=[0, 4, 8], tokenizer_dir=toy_inputs["tokenizer"], seq_len=64)
    return {"dir": out, "steps": [0, 4, 8]}


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
