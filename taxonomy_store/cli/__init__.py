"""The `tstore` command line: a thin client of the facade.

One module per command group; each adds its commands to `cli` when imported. They print through
`render` (and `render_metrics`), share options from `options`, and import only click and light
helpers at the top; anything heavy (torch, sentence-transformers, chromadb, textual) is imported
inside the command that needs it.
"""

from __future__ import annotations

import sys

import click

from taxonomy_store.cli.app import cli

from taxonomy_store.cli import (  # noqa: E402,F401
    adapt_cmds,
    crosswalk_cmds,
    db_cmds,
    demo_cmds,
    embed_cmds,
    evaluate_cmds,
    encoder_cmds,
    export_cmds,
    import_cmds,
    metrics_cmds,
    pair_cmds,
    prompt_cmds,
    query_cmds,
    reproduce_cmds,
    serve_cmds,
    taxonomy_cmds,
    tui_cmds,
)


def main(argv: list[str] | None = None) -> None:
    from taxonomy_store.cli.app import run

    sys.exit(run(cli, argv))


__all__ = ["cli", "main", "click"]
