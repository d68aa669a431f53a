"""tstore import / export / prompt and pair curation commands."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..errors import InvalidValue
from ..text import inert
from .app import Context, cli, emit_json, json_option, pass_ctx, stderr_console

# Files at least this large get a progress bar on stderr.
PROGRESS_MIN_BYTES = 1_000_000
_FORMATS = (
    "xstest", "xstest-aug", "pairs", "do-not-answer", "contrast-wide", "contrast-long", "contrast-jsonl", "generic",
    "tstore-prompts", "tstore-pairs", "csv", "tsv", "jsonl", "json", "parquet",
)


def _parse_map(values: tuple[str, ...]) -> dict[str, str]:
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


class _Bar:
    """A rich progress bar on stderr, one task per stage."""

    def __init__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=stderr_console(), transient=True,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int) -> None:
        names = {"read": "reading", "check": "checking rows", "write": "writing prompts"}
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(names.get(stage, stage), total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0  # the import itself reports what is wrong with the path


@cli.command("import")
# No existence or kind checks here: the importer says what is wrong with the path as `error:` + `hint:`.
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(_FORMATS), metavar="FORMAT", help=f"File format (default: detected from the header): {', '.join(_FORMATS)}.")
@click.option("--dataset", help="Dataset name (default: the file name without extension).")
@click.option("--taxonomy", help="Taxonomy of the categories (default: the only one that has each value).")
@click.option("--map", "maps", multiple=True, metavar="TARGET=COLUMN", help="Generic files: map text, label, category, id, pair_with to columns (repeat or comma-separate).")
@click.option("--label", type=click.Choice(["safe", "unsafe", "unlabeled"]), help="Label for every row of a one-class generic file.")
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
    mapping = _parse_map(maps)
    kwargs = dict(
        format=fmt, dataset=dataset, taxonomy=taxonomy, mapping=mapping or None, label=label,
        create_categories=create_categories, dry_run=dry_run,
    )
    big = _file_size(path) >= PROGRESS_MIN_BYTES and not os.environ.get("TSTORE_NO_PROGRESS")
    if big:
        with _Bar() as bar:
            summary = ctx.store.imports.import_file(path, progress=bar, **kwargs)
    else:
        summary = ctx.store.imports.import_file(path, **kwargs)
    if as_json:
        emit_json(summary.to_dict())
        return
    for note in summary.notes:
        click.echo(f"note: {inert(note)}", err=True)
    for c in summary.changes:
        click.echo(f"changed: {inert(c)}", err=True)
    click.echo(summary.line())


@cli.command("export")
@click.option("--dataset", help="Only prompts with a row in this dataset.")
@click.option("--label", type=click.Choice(["safe", "unsafe", "unlabeled"]))
@click.option("--category", help="Only prompts in this category (code or exact name) or below it.")
@click.option("--taxonomy", help="Taxonomy of --category when the code is ambiguous.")
@click.option("--pairs", is_flag=True, help="Export pairs instead of prompts.")
@click.option("--pair-set", help="With --pairs: only this pair set.")
@click.option("--status", type=click.Choice(["proposed", "accepted", "rejected"]), help="With --pairs: only this status.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]), help="Output format (default: from -o's extension, else csv).")
@click.option("-o", "--output", default="-", show_default=True, help="Output file; - writes to stdout.")
@json_option
@pass_ctx
def export_cmd(ctx: Context, dataset, label, category, taxonomy, pairs, pair_set, status, fmt, output, as_json) -> None:
    """Export prompts (or --pairs) as CSV, JSON lines or Parquet; `tstore import` reads them back unchanged."""
    if fmt is None:
        suffix = Path(output).suffix.lower().lstrip(".") if output != "-" else ""
        fmt = suffix if suffix in ("csv", "jsonl", "parquet") else "csv"
    if pairs:
        result = ctx.store.exports.export_pairs(output, format=fmt, pair_set=pair_set, status=status)
    else:
        result = ctx.store.exports.export_prompts(output, format=fmt, dataset=dataset, label=label, category=category, taxonomy=taxonomy)
    to_stdout = output == "-"
    if as_json:
        if to_stdout:
            click.echo(__import__("json").dumps(result.to_dict()), err=True)
        else:
            emit_json(result.to_dict())
    else:
        click.echo(f"exported {result.rows} {result.what} to {'stdout' if to_stdout else result.path} ({result.format})", err=to_stdout)


# -- prompts -------------------------------------------------------------------------------
def _prompt_line(v) -> str:
    cat = "/".join(v.category_path) if v.category_path else "-"
    deleted = " [deleted]" if v.deleted else ""
    return f"{v.id}\t{v.label}\t{cat}\t{v.dataset or '-'}\t{inert(v.text)}{deleted}"


@cli.group()
def prompt() -> None:
    """Show, list, edit, delete, restore prompts; undo curation edits."""


@prompt.command("show")
@click.argument("prompt_id", type=int)
@json_option
@pass_ctx
def prompt_show(ctx: Context, prompt_id: int, as_json: bool) -> None:
    """Show one prompt."""
    v = ctx.store.curation.get_prompt(prompt_id)
    if as_json:
        emit_json(v.to_dict())
        return
    click.echo(f"prompt {v.id} (revision {v.revision}{', deleted' if v.deleted else ''})")
    click.echo(f"label:    {v.label}")
    click.echo(f"category: {v.taxonomy + ':' + '/'.join(v.category_path) if v.category_path else '-'}")
    click.echo(f"dataset:  {v.dataset or '-'}")
    click.echo(f"text:     {inert(v.text)}")


def _filters(f):
    for opt in reversed([
        click.option("--search", help="Text contains this (case-insensitive)."),
        click.option("--label", type=click.Choice(["safe", "unsafe", "unlabeled"])),
        click.option("--category", help="Category code or exact name (includes the nodes below it)."),
        click.option("--taxonomy", help="Only prompts categorised in this taxonomy."),
        click.option("--dataset", help="Only prompts with a row in this dataset."),
        click.option("--deleted", "include_deleted", is_flag=True, help="Include soft-deleted prompts."),
    ]):
        f = opt(f)
    return f


@prompt.command("list")
@_filters
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many (0: all).")
@click.option("--offset", type=int, default=0)
@json_option
@pass_ctx
def prompt_list(ctx: Context, search, label, category, taxonomy, dataset, include_deleted, limit, offset, as_json) -> None:
    """List prompts (JSON lines with --json)."""
    filters = dict(search=search, label=label, category=category, taxonomy=taxonomy, dataset=dataset, include_deleted=include_deleted)
    views = ctx.store.curation.list_prompts(limit=limit or None, offset=offset, **filters)
    if as_json:
        for v in views:
            emit_json(v.to_dict())
        return
    for v in views:
        click.echo(_prompt_line(v))
    total = ctx.store.curation.count_prompts(**filters)
    click.echo(f"{len(views)} of {total} prompts", err=True)


@prompt.command("edit")
@click.argument("prompt_id", type=int)
@click.option("--text")
@click.option("--label", type=click.Choice(["safe", "unsafe", "unlabeled"]))
@click.option("--category", help="Category code or exact name; '' or none clears it.")
@click.option("--taxonomy", help="Taxonomy of --category when ambiguous.")
@json_option
@pass_ctx
def prompt_edit(ctx: Context, prompt_id, text, label, category, taxonomy, as_json) -> None:
    """Edit a prompt's text, label or category (audited; `tstore prompt undo` reverts)."""
    if text is None and label is None and category is None:
        raise InvalidValue("nothing to change", "give --text, --label or --category")
    v = ctx.store.curation.update_prompt(prompt_id, text=text, label=label, category=category, taxonomy=taxonomy)
    emit_json(v.to_dict()) if as_json else click.echo(_prompt_line(v))


@prompt.command("delete")
@click.argument("prompt_id", type=int)
@json_option
@pass_ctx
def prompt_delete(ctx: Context, prompt_id, as_json) -> None:
    """Soft-delete a prompt (restore with `tstore prompt restore`)."""
    v = ctx.store.curation.delete_prompt(prompt_id)
    emit_json(v.to_dict()) if as_json else click.echo(f"deleted prompt {v.id}")


@prompt.command("restore")
@click.argument("prompt_id", type=int)
@json_option
@pass_ctx
def prompt_restore(ctx: Context, prompt_id, as_json) -> None:
    """Restore a soft-deleted prompt."""
    v = ctx.store.curation.restore_prompt(prompt_id)
    emit_json(v.to_dict()) if as_json else click.echo(f"restored prompt {v.id}")


@prompt.command("undo")
@click.option("--batch", "batch_id", help="Undo this audit batch (default: the newest curation edit not yet undone).")
@json_option
@pass_ctx
def prompt_undo(ctx: Context, batch_id, as_json) -> None:
    """Undo the newest curation edit (prompt or pair), by replaying the audit log backwards."""
    r = ctx.store.curation.undo(batch_id)
    emit_json(r.to_dict()) if as_json else click.echo(f"undid batch {r.undone_batch}: {', '.join(r.entities) or 'no changes'}")


# -- pairs ---------------------------------------------------------------------------------
@cli.group()
def pair() -> None:
    """List, accept, reject and add unsafe/safe pairs."""


@pair.command("list")
@click.option("--status", type=click.Choice(["proposed", "accepted", "rejected"]))
@click.option("--type", "pair_type", help="Pair type code.")
@click.option("--set", "pair_set", help="Pair set name.")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many (0: all).")
@json_option
@pass_ctx
def pair_list(ctx: Context, status, pair_type, pair_set, limit, as_json) -> None:
    """List pairs (JSON lines with --json)."""
    views = ctx.store.curation.list_pairs(status=status, pair_type=pair_type, pair_set=pair_set, limit=limit or None)
    if as_json:
        for v in views:
            emit_json(v.to_dict())
        return
    for v in views:
        click.echo(
            f"{v.id}\t{v.status}\t{v.pair_set}\t{v.pair_type or '-'}\tunsafe {v.unsafe_prompt_id}: {inert(v.unsafe_text)}"
            f"\tsafe {v.safe_prompt_id}: {inert(v.safe_text)}"
        )


def _decide(ctx: Context, pair_id: int, status: str, note: str | None, as_json: bool) -> None:
    v = ctx.store.curation.decide_pair(pair_id, status, note)
    emit_json(v.to_dict()) if as_json else click.echo(f"pair {v.id} {v.status}")


@pair.command("accept")
@click.argument("pair_id", type=int)
@click.option("--note")
@json_option
@pass_ctx
def pair_accept(ctx: Context, pair_id, note, as_json) -> None:
    """Accept a pair."""
    _decide(ctx, pair_id, "accepted", note, as_json)


@pair.command("reject")
@click.argument("pair_id", type=int)
@click.option("--note")
@json_option
@pass_ctx
def pair_reject(ctx: Context, pair_id, note, as_json) -> None:
    """Reject a pair."""
    _decide(ctx, pair_id, "rejected", note, as_json)


@pair.command("add")
@click.option("--unsafe", "unsafe_id", type=int, required=True, help="Id of the unsafe prompt.")
@click.option("--safe", "safe_id", type=int, help="Id of an existing safe prompt.")
@click.option("--safe-text", help="Text of a new safe variant (creates the prompt).")
@click.option("--type", "pair_type", help="Pair type code.")
@click.option("--set", "pair_set", default="curated", show_default=True)
@click.option("--kind", type=click.Choice(["challenging", "contrast"]), default="challenging", show_default=True)
@json_option
@pass_ctx
def pair_add(ctx: Context, unsafe_id, safe_id, safe_text, pair_type, pair_set, kind, as_json) -> None:
    """Pair an unsafe prompt with a safe one (proposed until accepted)."""
    v = ctx.store.curation.create_pair(
        unsafe_id, safe_prompt_id=safe_id, safe_text=safe_text, pair_type=pair_type, pair_set=pair_set, kind=kind
    )
    emit_json(v.to_dict()) if as_json else click.echo(f"pair {v.id} proposed: unsafe {v.unsafe_prompt_id} / safe {v.safe_prompt_id}")
