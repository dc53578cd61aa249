"""Parameters of ``ingest corpus``, ``ingest contexts`` and ``ingest dm-math`` (see :mod:`quanta_db.params`)."""

from __future__ import annotations

from dataclasses import dataclass

from quanta_db.params import Force, JobParams, ParameterError, Progress, param


@dataclass(frozen=True)
class CorpusParams(JobParams, Force, Progress):
    """Tokenize a Pile-format JSONL(.zst) or Parquet SOURCE into documents, tokens and vocab."""

    source: str = param(positional=True, help="JSONL(.zst) or Parquet file.")
    name: str = param(nonblank=True, help="Corpus name (the key in every table).")
    tokenizer: str = param(help="Transformers tokenizer: hub name or local folder.")
    max_docs: int | None = param(None, min=1, help="Read at most this many documents.")
    max_tokens: int = param(1024, min=1, help="Truncate documents to this many tokens.")
    text_column: str = param("text", help="Field or column holding the text.")
    subset_column: str | None = param(None, help="Field or column of the subset [default: meta.pile_set_name].")
    tokenizer_name: str | None = param(None, nonblank=True, help="Name of the tokenizer in the store "
                                       "[default: hub name or folder name].")


@dataclass(frozen=True)
class ContextsParams(JobParams, Force):
    """Sample random token windows per subset of a corpus into a new corpus."""

    source_corpus: str = param(flag="--from", key="from", help="Corpus to sample from.")
    name: str = param(nonblank=True, help="Name of the new corpus of contexts.")
    per_subset: int = param(512, min=1, help="Contexts per subset.")
    length: int = param(512, min=2, help="Tokens per context (at most).")
    seed: int = param(0, help="Seed of the draws.")

    def check(self) -> None:
        if self.name == self.source_corpus:  # --force would drop the source it reads from, and all derived from it
            raise ParameterError("name", f"{self.name!r} is the source corpus itself; give the contexts another name")


@dataclass(frozen=True)
class DmMathParams(JobParams, Force):
    """DeepMind-mathematics problems as aligned zero-shot and few-shot corpora."""

    name: str = param(nonblank=True, help="Prefix of the two corpora (<name>_zero_shot, <name>_few_shot).")
    tokenizer: str = param(help="Transformers tokenizer: hub name or local folder.")
    per_category: int = param(10, min=1, help="Problems per category.")
    categories: tuple[str, ...] | None = param(None, text="names",
                                               help="Comma-separated module/template names [default: all].")
    source: str | None = param(None, help="Folder of released module__template.txt files [default: generate].")
    seed: int = param(0, help="Seed of the generation (and of the sample of released problems).")
    few_shot_tokens: int = param(2048, min=2, help="Token limit of a few-shot context.")
    tokenizer_name: str | None = param(None, nonblank=True, identity=False, cli=False)
