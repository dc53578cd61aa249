"""Which model a job reads: one the store knows by name, or a hub name / local folder, whose
tokenizer must be the corpus's; and the catalog rows a job stages for a model."""

from __future__ import annotations

from quanta_db.errors import InputError
from quanta_db.params import ParameterError
from quanta_db.runtime import models as model_sources
from quanta_db.runtime.tokenizer import load_tokenizer, vocab_hash
from quanta_db.store.store import Store


def resolve_model(store: Store, model: str, step: int | None, corpus_info: dict):
    """(name, checkpoint, known): a model the store knows by name (at ``step``, or its only
    checkpoint), else a hub name or local folder at ``step``; its tokenizer must be the corpus's."""
    known = store.catalog_rows("models", model=model)
    if known:
        checkpoints = sorted(store.catalog_rows("checkpoints", model=model), key=lambda c: c["step"])
        if step is None and len(checkpoints) == 1:
            step = checkpoints[0]["step"]
        chosen = [c for c in checkpoints if c["step"] == step]
        if not chosen:
            steps = ", ".join(str(c["step"]) for c in checkpoints)
            raise InputError(f"model {model!r} has no checkpoint at step {step} in the store (known: {steps}); "
                             "pass --step")
        if known[0]["vocab_hash"] and known[0]["vocab_hash"] != corpus_info["vocab_hash"]:
            raise InputError(f"corpus {corpus_info['corpus']!r} was tokenized with another vocabulary than "
                             f"model {model!r}")
        return model, model_sources.Checkpoint(int(step), chosen[0]["revision"], chosen[0]["source"]), True
    checkpoints = model_sources.resolve_checkpoints(model, [step] if step is not None else None)
    if len(checkpoints) != 1:
        raise ParameterError("step", f"is needed: model {model} has {len(checkpoints)} checkpoints")
    check_corpus_tokenizer(model, checkpoints[0], None, corpus_info)
    return model_sources.default_model_name(model), checkpoints[0], False


def check_corpus_tokenizer(source, checkpoint, tokenizer, corpus_info) -> None:
    """The corpus must have been tokenized with the model's own tokenizer (vocabulary hash)."""
    tok = load_tokenizer(tokenizer) if tokenizer else model_sources.load_model_tokenizer(source, checkpoint)
    if vocab_hash(tok) != corpus_info["vocab_hash"]:
        raise InputError(
            f"corpus {corpus_info['corpus']!r} was tokenized with {corpus_info['tokenizer']!r}, "
            f"whose vocabulary differs from the tokenizer of model {source}; re-ingest the corpus with it"
        )


def stage_model_rows(run, model_name: str, checkpoint, lm, corpus_info: dict, source: str | None = None) -> None:
    """The ``models`` and ``checkpoints`` rows of a model (``source``: where its checkpoints come
    from, default the checkpoint's own location)."""
    run.upsert("models", [{"model": model_name, "source": source or checkpoint.location, **model_sources.model_info(lm),
                           "vocab_hash": corpus_info["vocab_hash"], "run_id": run.run_id}], key=["model"])
    run.upsert("checkpoints", [{"model": model_name, "step": checkpoint.step, "revision": checkpoint.revision,
                                "source": checkpoint.location, "run_id": run.run_id}], key=["model", "step"])
