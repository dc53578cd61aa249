"""The CLI reference in the README, generated from the click commands (a test keeps it in sync)."""

from __future__ import annotations

import click

BEGIN = "<!-- cli-reference:begin -->"
END = "<!-- cli-reference:end -->"


def _walk(command: click.Command, path: list[str]):
    yield path, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from _walk(command.commands[name], path + [name])


def reference_markdown() -> str:
    """Markdown: one section per command with its usage and help text as click prints them."""
    from cli.main import cli

    parts = []
    for path, command in _walk(cli, ["quanta-db"]):
        ctx = click.Context(command, info_name=" ".join(path), terminal_width=100, **cli.context_settings)
        parts.append(f"### `{' '.join(path)}`\n\n```\n{command.get_help(ctx).rstrip()}\n```\n")
    return "\n".join(parts)


def readme_section() -> str:
    return f"{BEGIN}\n{reference_markdown()}{END}"


def write_readme(path) -> None:
    """Replace the reference between the markers in the README at ``path``."""
    from pathlib import Path

    readme = Path(path)
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    readme.write_text(text[:start] + readme_section() + text[end:])


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        write_readme("README.md")
    else:
        print(readme_section())
