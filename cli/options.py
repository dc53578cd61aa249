"""Options shared by several commands, and the store handle on the click context."""

from __future__ import annotations

from pathlib import Path

import click

from quanta_db.reports.formats import FORMATS
from quanta_db.runtime.device import DTYPES

DEFAULT_STORE = "quanta-store"


class StoreRef:
    """The ``--store`` path; the store is opened only by commands that need it."""

    def __init__(self, path: str):
        self.path = Path(path)

    def open(self, create: bool = False):
        from quanta_db import open_store

        return open_store(self.path, create=create)


pass_store = click.make_pass_decorator(StoreRef)

format_option = click.option(
    "--format", "fmt", type=click.Choice(list(FORMATS)), default="table", show_default=True, help="Output format."
)
output_option = click.option(
    "-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
    help="Write to this file instead of standard output.",
)
force_option = click.option("--force", is_flag=True, help="Redo the job even if an identical run committed.")
def _quiet_libraries(_ctx, _param, progress: bool) -> bool:
    if not progress:
        from quanta_db.runtime.models import silence_library_progress

        silence_library_progress()
    return progress


progress_option = click.option("--progress/--no-progress", default=True, show_default=True, callback=_quiet_libraries,
                               help="Show progress bars (--no-progress: none, the libraries' own included).")


# True when quanta-db is the process (the console script), not a library call (CliRunner, tests):
# only then may a command restrict the whole process (see quanta_db.store.kernel_wall).
PROCESS = {"owned": False}


def read_only_process(output: str | None = None) -> None:
    """From here on the kernel refuses this thread, and every thread and process it starts, every
    write but to ``output`` (created empty first) and beneath the process's scratch folder (which
    becomes the temporary folder: the private catalog copies are made there), when quanta-db owns
    the process and the kernel offers Landlock."""
    if not PROCESS["owned"]:
        return
    import tempfile

    from quanta_db.store import copies
    from quanta_db.store.kernel_wall import forbid_writes, scratch_folder

    # The wall covers the threads started after it: a DuckDB database opened before (the store's
    # schema check keeps one for the queries that follow) has worker threads of its own.
    copies.forget()
    if output:
        Path(output).write_bytes(b"")
    scratch = scratch_folder()
    tempfile.tempdir = str(scratch)
    forbid_writes(tuple(str(path) for path in (output, scratch) if path))



def write_result(result, fmt: str, output: str | None, source: str | None = None, max_rows: int | None = None) -> None:
    """A query result (``quanta_db.store.querying.Result``) in format ``fmt``, printed or written
    to ``output`` (a binary format needs ``output``)."""
    from quanta_db.errors import InputError
    from quanta_db.reports.formats import encode

    data = encode(result, fmt, source=source, max_rows=max_rows)
    if FORMATS[fmt].binary:
        if not output:
            raise InputError(f"--format {fmt} needs -o FILE")
        Path(output).write_bytes(data)
        click.echo(f"wrote {result.table.num_rows} rows to {output}", err=True)
        return
    emit(data.decode(), output)


def emit(text: str, output: str | None) -> None:
    """Print ``text`` or write it to ``output``."""
    if output:
        Path(output).write_text(text)
        click.echo(f"wrote {output}", err=True)
    else:
        click.echo(text, nl=False)

device_option = click.option(
    "--device", default="auto", show_default=True, help="auto (cuda when available), cpu, cuda or cuda:N."
)


def dtype_option(flag: str, help: str | None = None):
    """A ``--dtype``-like option over the dtypes every model-running job accepts."""
    return click.option(flag, type=click.Choice(DTYPES), default="float32", show_default=True, help=help)


def echo_result(result) -> None:
    """One line per job: what it committed (and what the commit replaced), or why it skipped."""
    if result.details.get("staged"):
        click.echo(f"staged run {result.run_id}: {result.message}")
        return
    prefix = "skipped" if result.skipped else f"committed run {result.run_id}"
    line = f"{prefix}: {result.message}" + ("" if result.skipped else f" ({result.rows_written:,} rows)")
    if result.dropped:
        line += "; replaced " + ", ".join(f"{table} ({n:,})" for table, n in result.dropped.items())
    click.echo(line)


def echo_results(results) -> None:
    for result in results:
        echo_result(result)
