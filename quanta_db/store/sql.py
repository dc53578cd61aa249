"""The store's own SQL: fixed statements live in ``statements/NAME.sql``; the few built from
declarations quote their identifiers and literals here."""

import contextlib
import functools
from pathlib import Path

STATEMENTS = Path(__file__).with_name("statements")


@functools.cache
def statement(name: str) -> str:
    """The text of ``statements/NAME.sql``."""
    return (STATEMENTS / f"{name}.sql").read_text()


def statement_body(name: str) -> str:
    """``statements/NAME.sql`` without its comment lines, to be part of another statement."""
    return "\n".join(line for line in statement(name).splitlines() if not line.startswith("--"))


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def equal_condition(where: dict, column_sql=quote_ident) -> tuple[str, list]:
    """``col = ? AND ...`` (``IS NULL`` for None values) and its arguments; ``TRUE`` when empty.

    ``column_sql`` turns a column name into the SQL that reads it.
    """
    terms, args = [], []
    for column, value in where.items():
        if value is None:
            terms.append(f"{column_sql(column)} IS NULL")
        else:
            terms.append(f"{column_sql(column)} = ?")
            args.append(value)
    return " AND ".join(terms) or "TRUE", args  # pragma: no mutate  (SQL: any case)


def file_key_condition(where: dict) -> tuple[str, list]:
    """The condition on ``files.keys`` (a committed file's per-file key values, JSON) for ``where``."""
    condition, args = equal_condition(where, lambda column: f"json_extract_string(keys, '$.{column}')")
    return condition, [str(a) for a in args]


def in_transaction(con, action, *args):
    """``action(*args)`` in one transaction of ``con``, rolled back if it raises."""
    con.execute(statement("begin"))
    try:
        result = action(*args)
        con.execute(statement("commit"))
    except BaseException:
        with contextlib.suppress(Exception):
            con.execute(statement("rollback"))
        raise
    return result
