"""Job parameters, each declared once.

Every ingest job has a frozen dataclass of parameters (a subclass of :class:`JobParams`) whose
fields are declared with :func:`param`: type (the annotation), default, help, bounds, choices,
whether the value enters the run's identity and under which key. From that one declaration:

- the Python API (``quanta_db.ingest_<job>``) takes the fields as arguments (:func:`job_function`);
- validation runs on construction, and its errors name the parameter (``top_k must be at least 1``);
- ``identity()`` builds the dict that is hashed into ``runs.params_hash`` — its keys are a contract
  with every existing store (``tests/data/run_identities.json`` pins them);
- the CLI generates the command's options (``cli/params.py``), mapping a parameter to its flag in
  messages.

Model: SAEBench's ``eval_config.py`` (one pydantic dataclass per evaluation); a stdlib dataclass is
enough here.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields

from quanta_db.errors import InputError

REQUIRED = MISSING


class ParameterError(InputError):
    """A parameter's value is refused: ``parameter`` names the field, ``reason`` says why."""

    def __init__(self, parameter: str, reason: str):
        self.parameter = parameter
        self.reason = reason
        super().__init__(f"{parameter} {reason}")


@dataclass(frozen=True)
class Spec:
    """What :func:`param` declares beyond the dataclass field itself."""

    help: str = ""
    flag: str | None = None          # CLI flag when not --<name with dashes>
    key: str | None = None           # identity key when not the field name
    identity: bool = True            # False: how to run (device, progress), not what is computed
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None     # allowed values (each element's, for a sequence)
    text: str | None = None          # CLI parser of the value's text form (cli/params.py TEXT_TYPES)
    nonblank: bool = False           # names that become keys and paths
    nonempty: bool = False           # a sequence that must name at least one item
    positional: bool = False         # a CLI argument rather than an option
    cli: bool = True                 # False: Python API only
    multiple: bool = False           # a repeatable CLI option (the value is a tuple)
    rule: Callable | None = None     # value -> why it is refused, or None


def param(default=REQUIRED, *, kw_only: bool = False, **spec) -> dataclasses.Field:
    """A job parameter: a dataclass field carrying its :class:`Spec`."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("parameter defaults must be immutable (use a tuple)")
    return field(default=default, kw_only=kw_only, metadata={"spec": Spec(**spec)})


def spec_of(item: dataclasses.Field) -> Spec:
    return item.metadata.get("spec", Spec())


def flag_of(item: dataclasses.Field) -> str:
    return spec_of(item).flag or "--" + item.name.replace("_", "-")


def _plain(value):
    """Tuples hash as the lists they were before parameters were dataclasses."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _check(name: str, value, spec: Spec) -> None:
    if value is None:
        return
    if spec.nonblank and isinstance(value, str) and not value.strip():
        raise ParameterError(name, "must not be empty")
    if spec.rule is not None and (reason := spec.rule(value)):
        raise ParameterError(name, reason)
    if spec.nonempty and isinstance(value, (tuple, list)) and not value:
        raise ParameterError(name, "names none" + (f" (choose from {', '.join(spec.choices)})" if spec.choices else ""))
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    for item in items:
        if spec.choices is not None and item not in spec.choices:
            raise ParameterError(name, f"must be one of {', '.join(map(str, spec.choices))}, got {item!r}")
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            continue
        if isinstance(item, float) and not math.isfinite(item):
            raise ParameterError(name, f"must be a finite number, got {item}")
        if spec.min is not None and item < spec.min:
            raise ParameterError(name, f"must be at least {spec.min:g}, got {item:g}")
        if spec.max is not None and item > spec.max:
            raise ParameterError(name, f"must be at most {spec.max:g}, got {item:g}")


@dataclass(frozen=True)
class JobParams:
    """Base of every job's parameters: validated on construction, hashed by :meth:`identity`."""

    def __post_init__(self):
        for item in fields(self):
            _check(item.name, getattr(self, item.name), spec_of(item))
        self.check()

    def check(self) -> None:
        """Checks across parameters (a subclass's); raise :class:`ParameterError`."""

    def identity(self, **derived) -> dict:
        """The dict hashed into the run's ``params_hash``: every identity field under its key,
        plus what the job derives from its inputs (a corpus's run, a vocabulary's hash)."""
        found = {spec_of(f).key or f.name: _plain(getattr(self, f.name)) for f in fields(self) if spec_of(f).identity}
        return {**found, **derived}


@dataclass(frozen=True)
class Force:
    force: bool = param(False, kw_only=True, identity=False, help="Redo the job even if an identical run committed.")


def shard_rule(value) -> str | None:
    """``shard``: (i, n) with 0 <= i < n."""
    index, count = value
    return None if count >= 1 and 0 <= index < count else f"{index}/{count}: need 0 <= i < n"


@dataclass(frozen=True)
class StageOnly:
    stage_only: bool = param(False, kw_only=True, identity=False,
                             help="Compute and stage this shard's runs for `quanta-db commit --split` instead of "
                                  "committing them (without --shard: a split of one shard).")


@dataclass(frozen=True)
class Progress:
    progress: bool = param(True, kw_only=True, identity=False,
                           help="Show progress bars (--no-progress: none, the libraries' own included).")


def _batch_size_rule(value) -> str | None:
    text = str(value)
    return None if text == "auto" or (text.isdigit() and int(text) > 0) else \
        f"must be 'auto' or a positive integer, got {value!r}"


@dataclass(frozen=True)
class BatchSize:
    batch_size: str | int = param("auto", kw_only=True, identity=False, rule=_batch_size_rule,
                                  help="Documents per batch, or auto (a token budget from free memory).")


@dataclass(frozen=True)
class Device:
    device: str = param("auto", kw_only=True, identity=False, help="auto (cuda when available), cpu, cuda or cuda:N.")


def job_function(params_type: type[JobParams], run: Callable) -> Callable:
    """The public job ``f(store, *args, **kwargs)``: the arguments are ``params_type``'s fields (or
    one instance of it), validated, then ``run(store, params)``."""

    @functools.wraps(run)
    def job(store, *args, **kwargs):
        if len(args) == 1 and not kwargs and isinstance(args[0], params_type):
            return run(store, args[0])
        return run(store, params_type(*args, **kwargs))

    parameters = [inspect.Parameter("store", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    parameters += list(inspect.signature(params_type).parameters.values())
    job.__signature__ = inspect.Signature(parameters)
    job.params_type = params_type
    return job


def _text_form(value, spec: Spec) -> str:
    """A value as its CLI parser reads it (``cli/params.py`` TEXT_TYPES)."""
    if spec.text == "shard":
        return f"{value[0]}/{value[1]}"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return str(value)


def command_args(params: JobParams, replace: dict | None = None) -> list[str]:
    """The CLI arguments that give ``params`` (values at their default left out), with ``replace``
    mapping a field to the literal text to pass instead (e.g. a placeholder)."""
    replace = replace or {}
    positional, options = [], []
    for item in sorted(fields(params), key=lambda item: item.kw_only):
        spec = spec_of(item)
        value = replace.get(item.name, getattr(params, item.name))
        if not spec.cli or (item.name not in replace and item.default is not MISSING and value == item.default):
            continue
        if spec.positional:
            positional.append(_text_form(value, spec))
        elif isinstance(value, bool):
            options.append(flag_of(item) if value else "--no-" + item.name.replace("_", "-"))
        elif value is None:
            continue
        elif spec.multiple:
            options += [part for v in value for part in (flag_of(item), str(v))]
        else:
            options += [flag_of(item), value if item.name in replace else _text_form(value, spec)]
    return positional + options
