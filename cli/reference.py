"""Documentation generated from the code (a test keeps it in sync): the CLI reference from the
click commands (docs/cli.md), and the entity diagram from the table declarations (docs/store.md).

``python -m quanta_db.cli.reference --write`` rewrites them.
"""

from __future__ import annotations

import click

FENCE = "`" * 3


def walk(command: click.Command, path: list[str]):
    """(path, command) for ``command`` and every subcommand, depth first, by name."""
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            yield from walk(command.get_command(ctx, name), path + [name])


def reference_markdown() -> str:
    """Markdown: one section per command with its usage and help text as click prints them."""
    from quanta_db.cli.main import cli

    parts = []
    for path, command in walk(cli, ["quanta-db"]):
        ctx = click.Context(command, info_name=" ".join(path), terminal_width=100, **cli.context_settings)
        parts.append(f"### `{' '.join(path)}`\n\n{FENCE}\n{command.get_help(ctx).rstrip()}\n{FENCE}\n")
    return "\n".join(parts)


def diagram_markdown() -> str:
    from quanta_db.store.diagram import entity_diagram

    return f"{FENCE}mermaid\n{entity_diagram()}\n{FENCE}\n"


SECTIONS = {"cli-reference": reference_markdown, "entity-diagram": diagram_markdown}
HOMES = {"cli-reference": "docs/cli.md", "entity-diagram": "docs/store.md"}  # relative to the repository


def readme_section(name: str = "cli-reference") -> str:
    return f"<!-- {name}:begin -->\n{SECTIONS[name]()}<!-- {name}:end -->"


def write_sections(repository) -> None:
    """Replace every generated section between its markers in its file under ``repository``."""
    from pathlib import Path

    for name, home in HOMES.items():
        page = Path(repository) / home
        text = page.read_text()
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        start, stop = text.index(begin), text.index(end) + len(end)
        page.write_text(text[:start] + readme_section(name) + text[stop:])


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        write_sections(".")
    else:
        print("\n\n".join(readme_section(name) for name in SECTIONS))
