"""Corpus readers: Pile-format JSONL (``.jsonl`` / ``.jsonl.zst``) and Parquet.

Pile lines are ``{"text": ..., "meta": {"pile_set_name": ...}}``. ``doc_id`` is the 0-based
index of the record in the source, so it stays stable when ``max_docs`` changes.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from quanta_db.errors import InputError


@dataclass(frozen=True)
class Document:
    doc_id: int
    text: str
    subset: str | None


def iter_documents(
    path,
    text_column: str = "text",
    subset_column: str | None = None,
    max_docs: int | None = None,
) -> Iterator[Document]:
    """Yield documents from ``path`` in source order, at most ``max_docs``."""
    path = check_source(path)
    if path.name.lower().endswith(".parquet"):
        records = _parquet_records(path, text_column, subset_column)
    else:
        records = _jsonl_records(path, text_column, subset_column)
    for doc_id, (text, subset) in enumerate(records):
        if max_docs is not None and doc_id >= max_docs:
            return
        yield Document(doc_id, text, subset)


def check_source(path) -> Path:
    """``path`` as a Path, if it is an existing file of a supported format."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"corpus source {path} does not exist or is not a file")
    if not path.name.lower().endswith((".parquet", ".jsonl", ".jsonl.zst")):
        raise InputError(f"corpus source {path.name}: expected .jsonl, .jsonl.zst or .parquet")
    return path


def _zstd_chunks(path: Path) -> Iterator[bytes]:
    """Decompressed bytes of every zstd frame in ``path``; a file that ends inside a frame is
    refused (a copy cut short after a flushed block would otherwise read as a shorter corpus)."""
    import zstandard

    with path.open("rb") as raw:
        frame = zstandard.ZstdDecompressor().decompressobj()
        in_frame = produced = False
        while chunk := raw.read(1 << 20):
            while chunk:
                out = frame.decompress(chunk)
                in_frame = True
                if out:
                    produced = True
                    yield out
                chunk = b""
                if frame.eof:
                    chunk, in_frame = frame.unused_data, False
                    frame = zstandard.ZstdDecompressor().decompressobj()
    if in_frame:
        where = "after part of its text" if produced else "inside its first block"
        raise InputError(f"{path.name} is truncated: it ends inside a zstd frame ({where}); nothing was ingested")


def _lines(path: Path) -> Iterator[str]:
    if not path.name.lower().endswith(".zst"):
        with path.open("r", encoding="utf-8") as handle:
            yield from handle
        return
    decoder = codecs.getincrementaldecoder("utf-8")()
    pending = ""
    for chunk in _zstd_chunks(path):
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        for line in complete:
            yield line + "\n"
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def _jsonl_records(path: Path, text_column: str, subset_column: str | None):
    import zstandard

    try:
        for line_no, line in enumerate(_lines(path), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"{path.name} line {line_no} is not JSON ({error.msg})") from None
            yield _from_record(record, path, line_no, text_column, subset_column)
    except (zstandard.ZstdError, UnicodeDecodeError) as error:
        raise InputError(f"{path.name} cannot be decoded: {error}") from None


def _from_record(record, path: Path, line_no: int, text_column: str, subset_column: str | None):
    if not isinstance(record, dict) or not isinstance(record.get(text_column), str):
        raise InputError(f"{path.name} line {line_no} has no string field {text_column!r}")
    if subset_column:
        if subset_column not in record:
            raise InputError(f"{path.name} line {line_no} has no field {subset_column!r} (--subset-column)")
        subset = record[subset_column]
    else:
        meta = record.get("meta")
        subset = meta.get("pile_set_name") if isinstance(meta, dict) else None
    return record[text_column], None if subset is None else str(subset)


def _parquet_records(path: Path, text_column: str, subset_column: str | None):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise InputError(f"{path.name} is not a readable Parquet file ({error})") from None
    names = parquet.schema_arrow.names
    if text_column not in names:
        raise InputError(f"{path.name} has no column {text_column!r} (columns: {', '.join(names)})")
    subset_column = subset_column or next((c for c in ("pile_set_name", "subset") if c in names), None)
    if subset_column and subset_column not in names:
        raise InputError(f"{path.name} has no column {subset_column!r} (--subset-column)")
    columns = [text_column] + ([subset_column] if subset_column else [])
    row = 0
    for batch in parquet.iter_batches(columns=columns, batch_size=4096):
        texts = batch.column(0).to_pylist()
        subsets = batch.column(1).to_pylist() if subset_column else [None] * len(texts)
        for text, subset in zip(texts, subsets):
            row += 1
            if not isinstance(text, str):  # the JSONL rule: every record needs a string text
                raise InputError(f"{path.name} row {row} has no string field {text_column!r} (NULL)")
            yield text, None if subset is None else str(subset)
