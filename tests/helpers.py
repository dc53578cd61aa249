"""Builders and checks the tests share (fixtures are in conftest.py): tests import these,
never each other."""

from __future__ import annotations

import hashlib
import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from quanta_db.store.published import REPLACED_SUFFIX
from quanta_db.store.store import Store

SAE_HOOK = "blocks.1.hook_resid_pre"  # = output_hidden_states[1] of the 2-layer toy model
DEAD_FEATURES = [0, 5, 9]

# Stores are made on a local DuckLake file, and also on PostgreSQL when QUANTA_DB_TEST_POSTGRES
# names a database to make them in (postgresql://USER:PASSWORD@HOST:PORT/DATABASE; .ci/run
# starts one).
POSTGRES_ENV = "QUANTA_DB_TEST_POSTGRES"


def catalog_backends() -> list[str]:
    return ["duckdb", "postgresql"] if os.environ.get(POSTGRES_ENV) else ["duckdb"]


def drop_postgres_stores(folder: Path) -> None:
    """Drop the PostgreSQL schemas of the stores under ``folder`` (a test's), so that test runs
    leave nothing in the database."""
    import json

    import psycopg

    schemas = {json.loads(path.read_text())["schema"] for path in Path(folder).rglob("catalog.json")}
    if schemas:
        with psycopg.connect(os.environ[POSTGRES_ENV], autocommit=True) as session:
            for schema in schemas:
                session.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def snapshot(store: Store) -> dict:
    """Everything a reader can see, plus every file under tables/: equal iff nothing changed.

    The lake makes a new snapshot for every change committed to its catalog, and its data files
    are never changed in place: the latest snapshot's id and the files' bytes say it all (and
    the ``runs`` and ``files`` rows say it readably)."""
    from quanta_db.store.catalog import connect

    with connect(store.root, read_only=True) as con:
        state = {"lake_snapshot": con.execute("SELECT max(snapshot_id) FROM ducklake_snapshots('lake')").fetchone()[0]}
        for table in ("runs", "files"):
            state[table] = sorted(map(repr, con.execute(f'SELECT * FROM "{table}"').fetchall()))
    tables = store.root / "tables"
    state["files"] = {
        p.relative_to(store.root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(tables.rglob("*")) if p.is_file()
    }
    return state


def raw_table(store: Store, table: str):
    """All Parquet files under tables/<table> read with pyarrow, bypassing the catalog."""
    import pandas as pd
    import pyarrow.parquet as pq

    files = sorted((store.root / "tables" / table).rglob("*.parquet"))
    return pd.concat([pq.read_table(f).to_pandas() for f in files], ignore_index=True)


def staging_entries(store: Store) -> list[Path]:
    staging = store.root / "staging"
    return sorted(staging.iterdir()) if staging.exists() else []


def build_sae(architecture: str, d_in: int, folder, hook=SAE_HOOK, d_sae=48, nan=False, model_name="tiny"):
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    metadata = SAEMetadata(hook_name=hook, model_name=model_name)
    config_class, sae_class, extra = {
        "standard": (StandardSAEConfig, StandardSAE, {}),
        "topk": (TopKSAEConfig, TopKSAE, {"k": 6}),
        "jumprelu": (JumpReLUSAEConfig, JumpReLUSAE, {}),
    }[architecture]
    sae = sae_class(config_class(d_in=d_in, d_sae=d_sae, metadata=metadata, **extra))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(d_in, d_sae, generator=generator) * 3)  # the toy stream is ~0.2 in norm
        sae.W_dec.copy_(torch.randn(d_sae, d_in, generator=generator) / d_sae**0.5)
        sae.b_enc.copy_(torch.full((d_sae,), -0.3))
        sae.b_enc[DEAD_FEATURES] = -1e4  # never active
        if architecture == "jumprelu":
            sae.threshold.copy_(torch.full((d_sae,), 0.1))
        if nan:
            sae.W_enc[0, 1] = float("nan")
    sae.save_model(folder)
    return folder


def direct_sae_outputs(store, toy_model, sae_dir, n_tokens=None):
    """Activations from output_hidden_states, the SAE's own encode, numpy statistics."""
    from sae_lens import SAE
    from transformers import AutoModelForCausalLM

    from quanta_db.results.corpus.read import load_corpus_tokens

    model = AutoModelForCausalLM.from_pretrained(str(toy_model["dir"] / "step8"), dtype=torch.float32).eval()
    sae = SAE.load_from_disk(str(sae_dir), device="cpu")
    doc_ids, sequences = load_corpus_tokens(store, "toy")
    xs, keys = [], []
    for doc, ids in zip(doc_ids, sequences):
        if len(ids) == 0:
            continue
        with torch.no_grad():
            hidden = model(input_ids=torch.from_numpy(ids.astype(np.int64))[None], output_hidden_states=True)
        xs.append(hidden.hidden_states[1][0])
        keys += [(int(doc), p) for p in range(len(ids))]
    x = torch.cat(xs)
    with torch.no_grad():
        feats = sae.encode(x)
        x_hat = sae.decode(feats)
    return x.numpy(), feats.numpy(), x_hat.numpy(), keys, model, sae


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


def fresh_store(templates: dict, name: str, root: Path, backend: str, build) -> Store:
    """``build(root)`` → a store at ``root``: a copy of the first one this session built on the
    same backend (``templates``: the session's ``_store_templates``)."""
    template = templates["folder"] / f"{name}-{backend}"
    if not template.is_dir():
        build(template)
    # not the second name a commit's thread may be removing meanwhile (quanta_db/store/published.py)
    shutil.copytree(template, root, ignore=shutil.ignore_patterns(f"*{REPLACED_SUFFIX}"))
    if backend == "postgresql":
        _copy_postgres_catalog(template, root)
    return Store(root)


def _copy_postgres_catalog(template: Path, root: Path) -> None:
    """Give the folder ``root``, copied from the PostgreSQL store ``template``, a catalog of its
    own: a new schema holding a copy of every metadata table, its data path set to ``root``.
    The lake records every other path relative to that one (``path_is_relative``), so the copy
    is the same store at a new place, as a copied local store is (3 s less per test)."""
    import psycopg
    from psycopg import sql

    from quanta_db.store import lake

    old = lake.locate(template)
    new = lake.new_locator(root, old.url)
    with psycopg.connect(os.environ[POSTGRES_ENV]) as session:  # one transaction
        session.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(new.schema)))
        tables = session.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [old.schema]).fetchall()
        for (table,) in tables:
            source, target = sql.Identifier(old.schema, table), sql.Identifier(new.schema, table)
            session.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(target, source))
            session.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(target, source))
        data_path = sql.Identifier(new.schema, "ducklake_metadata")
        moved = session.execute(sql.SQL("UPDATE {} SET value = %s || substr(value, %s) WHERE key = 'data_path' "
                                        "AND value LIKE %s").format(data_path),
                                [root.as_posix(), len(template.as_posix()) + 1, f"{template.as_posix()}/%"])
        assert moved.rowcount == 1, f"the data path of {template} is not under it"
    lake.save(new)


def ingest_toy_corpus(store: Store, toy_inputs: dict) -> Store:
    from quanta_db.results.corpus.job import ingest_corpus

    ingest_corpus(store, toy_inputs["corpus"], "toy", str(toy_inputs["tokenizer"]), max_tokens=128, progress=False)
    return store


def snapshot_count(snapshot, sql: str) -> int:
    """The single number ``sql`` (user SQL) answers on a :class:`quanta_db.store.snapshots.Snapshot`."""
    from quanta_db.store.querying import run_on

    return run_on(snapshot, sql).table.column(0)[0].as_py()


def commit_vocab(store: Store, tokenizers: list[str], tokens: list[str]) -> None:
    """One committed run of ``vocab`` rows, token id 0 of each tokenizer."""
    import pyarrow as pa

    with store.begin_run("test", {}) as run:
        run.write("vocab", pa.table({"tokenizer": tokenizers, "token_id": [0] * len(tokens), "token": tokens}))
        run.commit()
