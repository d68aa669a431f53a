"""`tstore reproduce safe-embed`: the Safe-Embed paper's tables from public data, beside its published row."""

from __future__ import annotations

from pathlib import Path

import click

from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import InputDir, OutputDir, json_option
from taxonomy_store.cli.render import echo_untrusted, emit_json, progress_bar, untrusted


@cli.group()
def reproduce() -> None:
    """Reproduce a paper's tables from public data."""


@reproduce.command("safe-embed")
@click.option("--data", "data_dir", required=True, type=InputDir(), help="Folder holding xstest_aug.csv and do_not_answer.csv.")
@click.option("--encoder", "-e", "encoders", multiple=True, help="Encoder (repeatable) [default: every registered encoder].")
@click.option("--out", "out_dir", default="safe-embed-report", show_default=True, type=OutputDir(), help="Where to write the report.")
@json_option
@pass_ctx
def safe_embed(ctx: Context, data_dir: str, encoders: tuple[str, ...], out_dir: str, as_json: bool) -> None:
    """Import the Safe-Embed data, embed with each encoder, and write a report (Markdown, JSON, PNG charts)
    beside the paper's published SBERT-all row. Running it twice re-encodes nothing."""
    from taxonomy_store.workflows.reproduce import reproduce_safe_embed
    from taxonomy_store.store import init_store

    # The store is created if it does not exist yet: one command from nothing to the report.
    store = init_store(ctx.store_arg, db_url=ctx.db_url, chroma_url=ctx.chroma_url)
    store.chroma_token = ctx.chroma_token
    with progress_bar() as progress:
        report = reproduce_safe_embed(
            store, Path(data_dir), list(encoders) or None, Path(out_dir), progress=progress,
            say=lambda m: echo_untrusted(m, err=True),
        )
    if as_json:
        emit_json(report.summary())
        return
    click.echo(report.markdown_path.read_text(encoding="utf-8"))
    click.echo(f"report written to {untrusted(report.out_dir)}: " + ", ".join(untrusted(p.name) for p in report.files))
