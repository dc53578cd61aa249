"""What every ingest job shares: the result it reports and source fingerprints."""

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


def file_fingerprint(path) -> dict:
    """Identity of an input file for the run's parameter hash: resolved path, size, mtime."""
    path = Path(path).resolve()
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}
