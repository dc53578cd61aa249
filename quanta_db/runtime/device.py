"""Device, dtype and memory-budget choices shared by every model-running job."""

from __future__ import annotations

from quanta_db.errors import InputError
from quanta_db.params import ParameterError

DTYPES = ("float32", "bfloat16", "float16")


def resolve_device(name: str = "auto"):
    """``auto`` → cuda when available, else cpu."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError("device", f"{name} was asked for but no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ParameterError("device", f"{name!r} is no device (auto, cpu, cuda or cuda:N)") from None


def resolve_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise ParameterError("dtype", f"must be one of {', '.join(DTYPES)}, got {name!r}")
    return getattr(torch, name)


def memory_budget_bytes(device, gpu_fraction: float, cpu_bytes: float, override_gb: float | None = None) -> float:
    """Bytes a job may fill: ``override_gb`` when given, else ``gpu_fraction`` of the device's
    free memory on CUDA, else ``cpu_bytes``."""
    import torch

    if override_gb is not None:
        if override_gb <= 0:
            raise InputError("a memory budget must be positive")
        return override_gb * 2**30
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return gpu_fraction * free
    return cpu_bytes


def token_budget(batch_size, device, n_ctx: int, bytes_per_token: float, gpu_fraction: float, cpu_tokens: int,
                 min_tokens: int | None = None, max_tokens: int | None = None) -> int:
    """Tokens per batch: ``batch_size`` documents of ``n_ctx`` tokens, or for "auto" what
    ``gpu_fraction`` of the free CUDA memory holds at ``bytes_per_token`` (``cpu_tokens`` on a
    CPU), at least ``min_tokens`` (default ``n_ctx``) and at most ``max_tokens``."""
    if batch_size != "auto":
        return int(batch_size) * n_ctx
    tokens = memory_budget_bytes(device, gpu_fraction, cpu_tokens * bytes_per_token) / bytes_per_token
    tokens = max(n_ctx if min_tokens is None else min_tokens, tokens)
    return int(tokens if max_tokens is None else min(max_tokens, tokens))


def parse_batch_size(value) -> str | int:
    """``"auto"`` or a positive number of documents per batch."""
    if value == "auto":
        return "auto"
    text = str(value)
    if not (text.isdigit() and int(text) > 0):
        raise ParameterError("batch_size", f"must be 'auto' or a positive integer, got {value!r}")
    return int(text)
