"""Commands generated from job parameters (``quanta_db.params``), and the click types that read
a parameter's text form (``i/n``, ``LOW,HIGH``, ``EARLY,LATE``, step lists, comma lists)."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import MISSING, fields

import click

from quanta_db.cli.options import echo_result, echo_results, pass_store, progress_option
from quanta_db.errors import InputError
from quanta_db.kinds import resolve
from quanta_db.params import ParameterError, flag_of, spec_of


def _refuse(param, reason: str):
    """A text the type cannot read: one line naming the flag (like every other refused value)."""
    raise InputError(f"{param.opts[0] if param is not None else 'value'} {reason}")


class CommaList(click.ParamType):
    """``a,b,c`` → ("a", "b", "c"), blanks dropped."""

    name = "A,B,..."

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        return tuple(item.strip() for item in str(value).split(",") if item.strip())


class Pair(click.ParamType):
    """``a<sep>b`` → (cast(a), cast(b))."""

    def __init__(self, cast, sep: str, metavar: str, example: str):
        self.cast, self.sep, self.name, self.example = cast, sep, metavar, example

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            first, second = (self.cast(x) for x in str(value).split(self.sep))
        except ValueError:
            _refuse(param, f"expects {self.name} (e.g. {self.example}), got {value!r}")
        return first, second


class Shard(Pair):
    """``i/n`` with 0 <= i < n."""

    def __init__(self):
        super().__init__(int, "/", "i/n", "0/4")

    def convert(self, value, param, ctx):
        index, count = super().convert(value, param, ctx)
        if count < 1 or not 0 <= index < count:
            _refuse(param, f"{value}: need 0 <= i < n")
        return index, count


class Steps(click.ParamType):
    """``0,512,1000`` → (0, 512, 1000) sorted and distinct; ``all`` → "all"."""

    name = "STEPS"

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        from quanta_db.runtime.models import parse_steps

        try:
            steps = parse_steps(value)
        except ParameterError as error:
            _refuse(param, error.reason)
        return steps if steps == "all" else tuple(steps)


RUN_OPTIONS = ("batch_size", "device", "force", "stage_only", "progress")  # how to run: listed last, in this order
TEXT_TYPES = {
    "names": CommaList(),
    "shard": Shard(),
    "steps": Steps(),
    "int_pair": Pair(int, ",", "LOW,HIGH", "0,1000"),
    "sigma_pair": Pair(float, ",", "EARLY,LATE", "1,2"),
}


def _base_type(annotation):
    """``int | None`` → int; other annotations as they are."""
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if len(args) == 1 else annotation


def _click_type(item, annotation):
    spec = spec_of(item)
    if spec.text:
        return TEXT_TYPES[spec.text]
    if spec.choices is not None:
        return click.Choice([str(c) for c in spec.choices])
    # Bounds are the library's to check: its one-line error then names the flag (click's range
    # types would print a usage block instead); the help shows them.
    return {int: click.INT, float: click.FLOAT}.get(_base_type(annotation), click.STRING)


def _bounds(spec) -> str:
    shown = [f"x>={spec.min:g}" if spec.min is not None else "", f"x<={spec.max:g}" if spec.max is not None else ""]
    return f" [{', '.join(s for s in shown if s)}]" if any(shown) else ""


def _decorator(item, annotation):
    """The click option (or argument) of one parameter."""
    spec = spec_of(item)
    if item.name == "progress":
        return progress_option
    if spec.positional:
        return click.argument(item.name, type=_click_type(item, annotation))
    required = item.default is MISSING
    default = None if required else item.default
    help_text = spec.help + _bounds(spec)
    if _base_type(annotation) is bool:
        return click.option(flag_of(item), item.name, is_flag=True, default=default, help=help_text)
    if spec.multiple:
        return click.option(flag_of(item), item.name, type=_click_type(item, annotation), multiple=True, help=help_text)
    shown = default is not None and not spec.text and not isinstance(default, tuple)
    if isinstance(default, tuple) and spec.text == "names":
        default, shown = ",".join(default), True
    return click.option(flag_of(item), item.name, type=_click_type(item, annotation), required=required,
                        default=default, show_default=shown, help=help_text)


def job_command(name: str, params_type, job: str, *, create: bool = False, plan: str | None = None) -> click.Command:
    """A click command running ``job`` (``"module:function"``, imported when run) with
    ``params_type``'s parameters: one option per CLI parameter, in declaration order, help from the
    class's docstring; a refused value is reported under its flag. ``plan`` (``"module:function"``
    giving a job's split into shards) makes it shardable: ``--plan``, ``--shards``, ``--executor``."""
    hints = typing.get_type_hints(params_type)
    items = sorted((item for item in fields(params_type) if spec_of(item).cli),
                   key=lambda item: (item.kw_only, RUN_OPTIONS.index(item.name) if item.name in RUN_OPTIONS else -1))
    flags = {item.name: flag_of(item) for item in items}

    @pass_store
    def command(ref, **values):
        split_options = {key: values.pop(key) for key in SPLIT_OPTIONS if key in values}
        try:
            params = params_type(**values)
            if plan and (split_options["show_plan"] or split_options["executor"] or split_options["shards"]):
                return run_split_command(ref, name, job, plan, params, **split_options)
            result = resolve(job)(ref.open(create=create), params)
        except ParameterError as error:
            raise InputError(f"{flags.get(error.parameter, error.parameter)} {error.reason}") from None
        (echo_results if isinstance(result, list) else echo_result)(result)

    if plan:  # listed after the job's own options
        for option in reversed(split_options()):
            command = option(command)
    for item in reversed(items):
        command = _decorator(item, hints[item.name])(command)
    command = click.command(name, help=(params_type.__doc__ or "").split("\n\n")[0].strip())(command)
    if plan:  # what `quanta-db slurm ingest` needs to make its own form of the command
        command.shardable = Shardable(name, params_type, job, plan, flags)
    return command


@dataclasses.dataclass(frozen=True)
class Shardable:
    name: str
    params_type: type
    job: str
    plan: str
    flags: dict

    def params(self, values: dict):
        """The job's parameters from the command's values; a refused one is named by its flag."""
        try:
            return self.params_type(**values)
        except ParameterError as error:
            raise InputError(f"{self.flags.get(error.parameter, error.parameter)} {error.reason}") from None

    def split(self, params, shards: int):
        if shards < 1:
            raise InputError(f"--shards must be at least 1, got {shards}")
        return resolve(self.plan)(params, shards)


SPLIT_OPTIONS = ("show_plan", "shards", "executor", "ray_address", "gpus_per_shard")


def split_options() -> list:
    return [
        click.option("--plan", "show_plan", is_flag=True,
                     help="Print the split's units and the shard that takes each (with --shards N or --shard i/n), "
                          "and exit."),
        click.option("--shards", type=int, help="Split the job into N shards (with --executor or --plan)."),
        click.option("--executor", type=click.Choice(["ray"]),
                     help="Run the N shards on Ray (pip install 'quanta-db[ray]') and commit them as one split."),
        click.option("--ray-address", help="Ray cluster to use ('auto': the running one) [default: start a local one]."),
        click.option("--gpus-per-shard", type=float,
                     help="GPUs each shard's Ray task takes [default: 1 if the cluster has GPUs, else 0]."),
    ]


def run_split_command(ref, name: str, job: str, plan: str, params, show_plan, shards, executor, ray_address,
                      gpus_per_shard) -> None:
    """``--plan`` or ``--executor ray --shards N``."""
    shards = shards if shards is not None else (params.shard[1] if getattr(params, "shard", None) else None)
    if shards is None or shards < 1:
        raise InputError(f"--shards must be at least 1, got {shards}" if shards is not None
                         else "--plan and --executor need --shards N")
    split = resolve(plan)(params, shards)
    if show_plan:
        click.echo(f"split {split.split}: {len(split.labels)} unit(s) in {shards} shard(s)")
        for line in split.describe():
            click.echo(f"  {line}")
        return
    if getattr(params, "shard", None) or params.stage_only:
        raise InputError("--executor runs every shard itself: drop --shard and --stage-only")
    from quanta_db.scaleout import ray_executor

    done = ray_executor.run_split(ref.open(), job, name, params, split, address=ray_address,
                                  gpus_per_shard=gpus_per_shard, progress=params.progress)
    echo_split(done)


def echo_split(done) -> None:
    """The line of a committed split."""
    extra = f", {done.duplicates} already committed" if done.duplicates else ""
    click.echo(f"committed split {done.split}: {len(done.runs)} run(s), {done.rows_written:,} rows{extra}")
