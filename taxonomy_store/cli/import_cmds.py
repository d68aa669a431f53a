"""`tstore import`: a data file into the store, all rows or none."""

from __future__ import annotations

import os
from pathlib import Path

import click

from taxonomy_store.errors import InvalidValue
from taxonomy_store.vocabulary import FILE_KINDS, IMPORT_FORMATS, LABELS
from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import json_option
from taxonomy_store.cli.render import echo_untrusted, emit_json, progress_bar

# Files at least this large get a progress bar on stderr.
PROGRESS_MIN_BYTES = 1_000_000
# A format name, or a bare file kind (read as generic).
FORMAT_CHOICES = IMPORT_FORMATS + FILE_KINDS
_STAGES = {"read": "reading", "check": "checking rows", "write": "writing prompts"}


def parse_column_map(values: tuple[str, ...]) -> dict[str, str]:
    """`--map text=question,label=is_harmful` (repeatable) as {target field: file column}."""
    mapping: dict[str, str] = {}
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            target, sep, column = part.partition("=")
            if not sep or not target.strip() or not column.strip():
                raise InvalidValue(f"--map {part!r} is not TARGET=COLUMN", "e.g. --map text=question,label=is_harmful")
            mapping[target.strip()] = column.strip()
    return mapping


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0  # the import itself reports what is wrong with the path


def _say_waiting() -> None:
    click.echo("waiting for another import of this store to finish...", err=True)


@cli.command("import")
# No existence or kind checks here: the importer says what is wrong with the path as `error:` + `hint:`.
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMAT_CHOICES), metavar="FORMAT", help=f"File format (default: detected from the header): {', '.join(FORMAT_CHOICES)}.")
@click.option("--dataset", help="Dataset name (default: the file name without extension).")
@click.option("--taxonomy", help="Taxonomy of the categories (default: the only one that has each value).")
@click.option("--map", "maps", multiple=True, metavar="TARGET=COLUMN", help="Generic files: map text, label, category, id, pair_with to columns (repeat or comma-separate).")
@click.option("--label", type=click.Choice(LABELS), help="Label for every row of a one-class generic file.")
@click.option("--create-categories", is_flag=True, help="Add unknown categories to --taxonomy instead of failing.")
@click.option("--dry-run", is_flag=True, help="Validate and report; write nothing.")
@json_option
@pass_ctx
def import_cmd(ctx: Context, path: Path, fmt, dataset, taxonomy, maps, label, create_categories, dry_run, as_json) -> None:
    """Import a data file: all rows or none, idempotent, every change audited.

    Built-in formats: XSTest prompts, Safe-Embed pairs (xstest_aug.csv), Do-Not-Answer,
    contrast sets (wide, long, JSON lines), tstore's own exports, and generic CSV/TSV/JSONL/JSON/Parquet
    with --map and --label.
    """
    mapping = parse_column_map(maps)
    kwargs = dict(
        format=fmt, dataset=dataset, taxonomy=taxonomy, mapping=mapping or None, label=label,
        create_categories=create_categories, dry_run=dry_run, on_wait=_say_waiting,
    )
    big = _file_size(path) >= PROGRESS_MIN_BYTES and not os.environ.get("TSTORE_NO_PROGRESS")
    if big:
        with progress_bar(labels=_STAGES) as progress:
            summary = ctx.store.imports.import_file(path, progress=progress, **kwargs)
    else:
        summary = ctx.store.imports.import_file(path, **kwargs)
    if as_json:
        emit_json(summary.to_dict())
        return
    for note in summary.notes:
        echo_untrusted(f"note: {note}", err=True)
    for c in summary.changes:
        echo_untrusted(f"changed: {c}", err=True)
    echo_untrusted(summary.line())
