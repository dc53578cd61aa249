"""Tokenizers: transformers ``AutoTokenizer`` from a hub name or a local folder."""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from quanta_db.errors import InputError, first_line


@contextmanager
def quiet_hub():
    """Silence the hub client's per-retry warnings: a failed load is reported in one line."""
    import huggingface_hub.utils as hub_utils

    previous = hub_utils.logging.get_verbosity()
    hub_utils.logging.set_verbosity_error()
    try:
        yield
    finally:
        hub_utils.logging.set_verbosity(previous)


def load_tokenizer(source: str):
    """``AutoTokenizer.from_pretrained(source)``: a hub name (offline cache) or a folder."""
    from transformers import AutoTokenizer

    try:
        with quiet_hub():
            return AutoTokenizer.from_pretrained(str(source))
    except Exception as error:  # transformers raises OSError, ValueError, HF errors...
        raise InputError(f"tokenizer {source!r} does not load: {first_line(error)}") from None


def tokenizer_key(source: str) -> str:
    """Default name of a tokenizer in the store: the hub name, or the folder's name."""
    path = Path(source)
    return path.resolve().name if path.exists() else str(source)


def vocab_hash(tokenizer) -> str:
    """sha256 of the vocabulary as sorted (id, token) pairs: equal iff the vocabularies are equal."""
    pairs = sorted((int(i), t) for t, i in tokenizer.get_vocab().items())
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()


def vocab_table(tokenizer, name: str) -> pa.Table:
    """One row per token id: the decoded text of that token alone (bytes of a partial UTF-8
    character decode to U+FFFD)."""
    ids = sorted(set(tokenizer.get_vocab().values()))
    texts = tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
    return pa.table({"tokenizer": [name] * len(ids), "token_id": ids, "token": texts})


def encode(tokenizer, texts: list[str], max_tokens: int | None) -> list[list[int]]:
    """Token ids of each text, without special tokens (Pythia adds no BOS), truncated."""
    kwargs = {"add_special_tokens": False}
    if max_tokens is not None:
        kwargs.update(truncation=True, max_length=max_tokens)
    return tokenizer(texts, **kwargs)["input_ids"]
