"""Inputs the project builds itself, so tests and the demo need no network.

A Pile-format corpus from the Python standard library (its docstrings and its source code
as two subsets), and a byte-level BPE tokenizer trained on it and saved like a hub
tokenizer, so it loads through the same ``AutoTokenizer.from_pretrained(path)`` call.
"""

from __future__ import annotations

import ast
import json
import sysconfig
from pathlib import Path

SUBSET_DOCSTRINGS = "stdlib_docstrings"
SUBSET_SOURCE = "stdlib_source"
EOS = "<|endoftext|>"


def stdlib_documents(n_per_subset: int = 200, max_chars: int = 4000) -> list[dict]:
    """Pile-format records: module docstrings and module source, in a fixed module order."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    docstrings, sources = [], []
    for path in sorted(stdlib.glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            docstring = ast.get_docstring(ast.parse(text))
        except (SyntaxError, ValueError):
            continue
        if docstring and len(docstrings) < n_per_subset and len(docstring) > 80:
            docstrings.append(docstring[:max_chars])
        if len(sources) < n_per_subset:
            sources.append(text[:max_chars])
        if len(docstrings) >= n_per_subset and len(sources) >= n_per_subset:
            break
    records = []
    for a, b in zip(docstrings, sources):  # interleave, so any prefix holds both subsets
        records.append({"text": a, "meta": {"pile_set_name": SUBSET_DOCSTRINGS}})
        records.append({"text": b, "meta": {"pile_set_name": SUBSET_SOURCE}})
    return records


def write_jsonl(records: list[dict], path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    return path


def train_tokenizer(texts: list[str], out_dir, vocab_size: int = 1024) -> Path:
    """Train a GPT-2-style byte-level BPE and save it with ``save_pretrained``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=EOS, bos_token=EOS, unk_token=EOS)
    out_dir = Path(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
