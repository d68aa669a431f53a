"""`tstore export`: prompts or pairs out as CSV, JSON lines or Parquet."""

from __future__ import annotations

from pathlib import Path

import click

from taxonomy_store.vocabulary import EXPORT_FORMATS, LABELS, PAIR_STATUSES
from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import OutputFile, json_option
from taxonomy_store.cli.render import emit_json, untrusted



@cli.command("export")
@click.option("--dataset", help="Only prompts with a row in this dataset.")
@click.option("--label", type=click.Choice(LABELS))
@click.option("--category", help="Only prompts in this category (code or exact name) or below it.")
@click.option("--taxonomy", help="Taxonomy of --category when the code is ambiguous.")
@click.option("--pairs", is_flag=True, help="Export pairs instead of prompts.")
@click.option("--pair-set", help="With --pairs: only this pair set.")
@click.option("--status", type=click.Choice(PAIR_STATUSES), help="With --pairs: only this status.")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), help="Output format (default: from -o's extension, else csv).")
@click.option("-o", "--output", type=OutputFile(), default="-", show_default=True, help="Output file; - writes to stdout.")
@json_option
@pass_ctx
def export_cmd(ctx: Context, dataset, label, category, taxonomy, pairs, pair_set, status, fmt, output, as_json) -> None:
    """Export prompts (or --pairs) as CSV, JSON lines or Parquet; `tstore import` reads them back unchanged."""
    if fmt is None:
        suffix = Path(output).suffix.lower().lstrip(".") if output != "-" else ""
        fmt = suffix if suffix in EXPORT_FORMATS else "csv"
    if pairs:
        result = ctx.store.exports.export_pairs(output, format=fmt, pair_set=pair_set, status=status)
    else:
        result = ctx.store.exports.export_prompts(output, format=fmt, dataset=dataset, label=label, category=category, taxonomy=taxonomy)
    to_stdout = output == "-"
    if as_json:
        # With the data on stdout, the summary goes to stderr.
        emit_json(result.to_dict(), err=to_stdout)
    else:
        where = "stdout" if to_stdout else untrusted(result.path)
        click.echo(f"exported {result.rows} {result.what} to {where} ({result.format})", err=to_stdout)
