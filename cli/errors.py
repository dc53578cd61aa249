"""Turn every failure into one line on stderr and a non-zero exit, never a traceback."""

from __future__ import annotations

import os

import click

from quanta_db.errors import QuantaError, first_line

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130
DEBUG_ENV = "QUANTA_DB_DEBUG"


class QuantaGroup(click.Group):
    """A click group whose subcommands report errors in one line."""

    def invoke(self, ctx: click.Context):
        if os.environ.get(DEBUG_ENV):
            return super().invoke(ctx)
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # output piped into `head` and the like: not an error
            ctx.exit(0)
        except KeyboardInterrupt:
            click.echo("Interrupted: nothing was committed; the store is as before (`quanta-db gc` cleans staging).", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except QuantaError as error:
            click.echo(f"Error: {first_line(error)}", err=True)
            ctx.exit(EXIT_ERROR)
        except Exception as error:  # the last line of defence: still one line
            click.echo(
                f"Error: {type(error).__name__}: {first_line(error)} (set {DEBUG_ENV}=1 for a traceback)", err=True
            )
            ctx.exit(EXIT_ERROR)
