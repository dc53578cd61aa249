"""Models and their training checkpoints, loaded with transformers ``from_pretrained``.

A model SOURCE is a hub name (Pythia checkpoints are revisions ``stepN``), a folder saved
with ``save_pretrained``, or a folder holding one such subfolder per step (``step0/``,
``step512/``...). Step -1 stands for an unversioned model whose training step is unknown
(a hub ``main`` revision or a plain folder), unless ``--steps`` names it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from quanta_db.errors import InputError, first_line
from quanta_db.params import ParameterError

# Pythia's 154 checkpoints: 0, 1, 2, 4, ..., 512, then every 1000 up to 143000.
PYTHIA_STEPS = [0] + [2**i for i in range(10)] + list(range(1000, 143001, 1000))
STEP_DIR = re.compile(r"^step(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    step: int
    revision: str | None  # hub revision, or None for a local folder
    location: str         # hub name or folder path passed to from_pretrained


def parse_steps(text: str | None) -> list[int] | str | None:
    """``"0,512,1000"`` → [0, 512, 1000]; ``"all"`` → "all"; None → None."""
    if text is None:
        return None
    if text.strip() == "all":
        return "all"
    try:
        steps = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise ParameterError("steps", f"expects comma-separated integers or 'all', got {text!r}") from None
    if not steps:
        raise ParameterError("steps", "is empty")
    return steps


def resolve_checkpoints(source: str, steps=None, revisions: tuple[str, ...] = ()) -> list[Checkpoint]:
    """The checkpoints a job will evaluate, in step order."""
    path = Path(source)
    if path.is_dir():
        return _local_checkpoints(path, steps)
    if path.exists() or source.startswith((".", "/")):
        raise InputError(f"model source {source} is not a folder")
    if revisions:
        return [Checkpoint(_step_of(rev, steps), rev, source) for rev in revisions]
    if steps is None:
        return [Checkpoint(-1, "main", source)]
    return [Checkpoint(s, f"step{s}", source) for s in (PYTHIA_STEPS if steps == "all" else steps)]


def _step_of(name: str, steps) -> int:
    match = STEP_DIR.match(name)
    if match:
        return int(match.group(1))
    if isinstance(steps, list) and len(steps) == 1:
        return steps[0]
    return -1


def _local_checkpoints(path: Path, steps) -> list[Checkpoint]:
    if (path / "config.json").is_file():
        return [Checkpoint(_step_of(path.name, steps), None, str(path))]
    found = {int(m.group(1)): p for p in path.iterdir() if (m := STEP_DIR.match(p.name)) and (p / "config.json").is_file()}
    if not found:
        raise InputError(f"model folder {path} holds neither config.json nor stepN/ checkpoint folders")
    if steps is None or steps == "all":
        chosen = sorted(found)
    else:
        missing = [s for s in steps if s not in found]
        if missing:
            raise InputError(f"model folder {path} has no checkpoint for step(s) {', '.join(map(str, missing))}")
        chosen = steps
    return [Checkpoint(s, None, str(found[s])) for s in chosen]


def default_model_name(source: str) -> str:
    path = Path(source)
    return path.resolve().name if path.exists() else source.rstrip("/").split("/")[-1]


def load_model(checkpoint: Checkpoint, dtype, device):
    """``AutoModelForCausalLM.from_pretrained`` in eval mode on ``device``."""
    from transformers import AutoModelForCausalLM

    from quanta_db.runtime.tokenizer import quiet_hub

    try:
        with quiet_hub():
            model = AutoModelForCausalLM.from_pretrained(checkpoint.location, revision=checkpoint.revision, dtype=dtype)
    except Exception as error:
        where = checkpoint.location + (f"@{checkpoint.revision}" if checkpoint.revision else "")
        raise InputError(f"model {where} does not load: {first_line(error)}") from None
    return model.to(device).eval()


def load_model_tokenizer(source: str, checkpoint: Checkpoint):
    """The tokenizer shipped with a model: beside it, at the checkpoints' parent, or on the hub."""
    from quanta_db.runtime.tokenizer import load_tokenizer

    candidates = [checkpoint.location]
    parent = Path(source)
    if parent.is_dir() and str(parent) != checkpoint.location:
        candidates.insert(0, str(parent))
    for candidate in candidates:
        if Path(candidate).is_dir() and not (Path(candidate) / "tokenizer_config.json").exists():
            continue
        return load_tokenizer(candidate)
    raise InputError(f"no tokenizer found with model {source}; pass --tokenizer")


def model_info(model) -> dict:
    """Size and shape of a loaded model, for the ``models`` catalog table."""
    config = model.config
    return {
        "architecture": (config.architectures or [type(model).__name__])[0],
        "n_params": sum(p.numel() for p in model.parameters()),
        "n_layers": getattr(config, "num_hidden_layers", None),
        "d_model": getattr(config, "hidden_size", None),
        "n_ctx": getattr(config, "max_position_embeddings", None),
        "d_vocab": getattr(config, "vocab_size", None),
    }


def silence_library_progress() -> None:
    """Turn off the progress bars transformers and huggingface_hub draw themselves (weight
    loading, downloads): ``--no-progress`` means no bar at all."""
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    disable_progress_bars()
