"""What every ingest job shares: the result it reports, input fingerprints, option parsing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class JobResult:
    run_id: str | None
    rows_written: int
    skipped: bool = False
    message: str = ""
    details: dict = field(default_factory=dict)
    dropped: dict = field(default_factory=dict)  # rows per table its commit replaced


def committed(run, rows_written: int, message: str, details: dict | None = None) -> JobResult:
    """The result of a job whose run ``run`` was committed; when an identical run committed
    first (a concurrent job), the commit was a no-op and the result says so."""
    if run.duplicate_of:
        return JobResult(run.duplicate_of, 0, skipped=True,
                         message=f"already committed by run {run.duplicate_of} (a concurrent identical job)")
    return JobResult(run.run_id, rows_written, dropped=run.dropped, message=message, details=details or {})


def file_fingerprint(path) -> dict:
    """Identity of an input file for the run's parameter hash: resolved path, size, mtime."""
    path = Path(path).resolve()
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def parse_pair(text: str, cast, sep: str, expects: str) -> tuple:
    """``"a{sep}b"`` → (cast(a), cast(b)), else the one-line error "``expects``, got 'text'"."""
    from quanta_db.errors import InputError

    try:
        first, second = (cast(x) for x in text.split(sep))
    except ValueError:
        raise InputError(f"{expects}, got {text!r}") from None
    return first, second


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` → (i, n) with 0 <= i < n."""
    if text is None:
        return None
    from quanta_db.errors import InputError

    index, count = parse_pair(text, int, "/", "--shard expects i/n (e.g. 0/4)")
    if count < 1 or not 0 <= index < count:
        raise InputError(f"--shard {text}: need 0 <= i < n")
    return index, count


def require_name(value: str | None, option: str) -> None:
    """Names become keys in every table and parts of file paths: an empty or blank one is refused."""
    from quanta_db.errors import InputError

    if value is not None and not str(value).strip():
        raise InputError(f"{option} must not be empty")
