"""User-facing errors: each carries one line that the CLI prints as is."""


class QuantaError(Exception):
    """An error whose message is meant for the user; the CLI prints it without a traceback."""


class StoreError(QuantaError):
    """The store is missing, malformed, locked, or from another version."""


class InputError(QuantaError):
    """A source file, tokenizer, model or option given by the user is unusable."""


class QueryError(QuantaError):
    """SQL that does not parse or bind, or names an unknown table or view."""


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name if it has none)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
