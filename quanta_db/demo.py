"""The embedded default: everything the README's first command runs, offline, on CPU.

Builds its inputs (a standard-library corpus, a tokenizer trained on it) next to the store,
then ingests them through the same jobs the CLI runs, and returns saved analyses to print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from quanta_db.jobs.corpus import ingest_corpus
from quanta_db.sources import toy
from quanta_db.store.store import Store

DEMO_CORPUS = "stdlib"
DEMO_ANALYSES = ("tokens_per_subset", "document_length_distribution")


def inputs_dir(store_path) -> Path:
    """Where the demo keeps what it builds: beside the store, never inside it."""
    store_path = Path(store_path).resolve()
    return store_path.with_name(store_path.name + "-inputs")


def build_inputs(work: Path, n_per_subset: int = 150, vocab_size: int = 1024) -> dict[str, Path]:
    records = toy.stdlib_documents(n_per_subset)
    corpus = toy.write_jsonl(records, work / "stdlib.jsonl")
    tokenizer = work / "tokenizer"
    if not (tokenizer / "tokenizer.json").exists():
        toy.train_tokenizer([r["text"] for r in records], tokenizer, vocab_size)
    return {"corpus": corpus, "tokenizer": tokenizer}


def run_demo(store_path, echo: Callable[[str], None] = print, progress: bool = True) -> Store:
    """Build inputs, ingest them, and echo a few saved analyses."""
    work = inputs_dir(store_path)
    echo(f"building demo inputs in {work}")
    inputs = build_inputs(work)
    store = Store.open(store_path, create=True)
    result = ingest_corpus(store, inputs["corpus"], DEMO_CORPUS, str(inputs["tokenizer"]), max_tokens=512,
                           progress=progress)
    echo(result.message)
    return store
