"""The CLI reference (docs/CLI.md), generated from the commands' own --help.

`python -m taxonomy_store.cli.reference > docs/CLI.md` rewrites it; a test keeps it in sync.
"""

from __future__ import annotations

import click

from taxonomy_store.cli import cli


def _walk(cmd: click.Command, path: list[str]):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from _walk(cmd.commands[name], path + [name])


def render() -> str:
    out = ["# tstore command reference", "", "Generated from `--help` by `python -m taxonomy_store.cli.reference`; do not edit by hand.", ""]
    for path, cmd in _walk(cli, ["tstore"]):
        name = " ".join(path)
        with click.Context(cmd, info_name=name, terminal_width=100, max_content_width=100, help_option_names=["-h", "--help"]) as ctx:
            text = cmd.get_help(ctx)
        out += [f"## `{name}`", "", "```text", text.rstrip(), "```", ""]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")
