"""README sections generated from the code (a test keeps them in sync): the CLI reference from
the click commands, and the entity diagram from the table declarations.

``python -m cli.reference --write`` rewrites them in README.md.
"""

from __future__ import annotations

import click

FENCE = "`" * 3


def walk(command: click.Command, path: list[str]):
    """(path, command) for ``command`` and every subcommand, depth first, by name."""
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from walk(command.commands[name], path + [name])


def reference_markdown() -> str:
    """Markdown: one section per command with its usage and help text as click prints them."""
    from cli.main import cli

    parts = []
    for path, command in walk(cli, ["quanta-db"]):
        ctx = click.Context(command, info_name=" ".join(path), terminal_width=100, **cli.context_settings)
        parts.append(f"### `{' '.join(path)}`\n\n{FENCE}\n{command.get_help(ctx).rstrip()}\n{FENCE}\n")
    return "\n".join(parts)


def diagram_markdown() -> str:
    from quanta_db.store.diagram import entity_diagram

    return f"{FENCE}mermaid\n{entity_diagram()}\n{FENCE}\n"


SECTIONS = {"cli-reference": reference_markdown, "entity-diagram": diagram_markdown}


def readme_section(name: str = "cli-reference") -> str:
    return f"<!-- {name}:begin -->\n{SECTIONS[name]()}<!-- {name}:end -->"


def write_readme(path) -> None:
    """Replace every generated section between its markers in the README at ``path``."""
    from pathlib import Path

    readme = Path(path)
    text = readme.read_text()
    for name in SECTIONS:
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        start, stop = text.index(begin), text.index(end) + len(end)
        text = text[:start] + readme_section(name) + text[stop:]
    readme.write_text(text)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        write_readme("README.md")
    else:
        print("\n\n".join(readme_section(name) for name in SECTIONS))
