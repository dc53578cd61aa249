"""Device and dtype choices shared by every GPU-capable job."""

from __future__ import annotations

from quanta_db.errors import InputError

DTYPES = ("float32", "bfloat16", "float16")


def resolve_device(name: str = "auto"):
    """``auto`` → cuda when available, else cpu."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}") from None


def resolve_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise InputError(f"--dtype must be one of {', '.join(DTYPES)}")
    return getattr(torch, name)
