"""`tstore prompt show|list|edit|delete|restore|undo`: curating single prompts."""

from __future__ import annotations

import click

from taxonomy_store.errors import InvalidValue
from taxonomy_store.vocabulary import LABELS
from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import json_option
from taxonomy_store.cli.render import emit_json, untrusted



def prompt_line(v) -> str:
    """One prompt as a tab-separated line: id, label, category path, dataset, text."""
    cat = "/".join(untrusted(c) for c in v.category_path) if v.category_path else "-"
    deleted = " [deleted]" if v.deleted else ""
    return f"{v.id}\t{v.label}\t{cat}\t{untrusted(v.dataset or '-')}\t{untrusted(v.text)}{deleted}"


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
    category = untrusted(v.taxonomy + ":" + "/".join(v.category_path)) if v.category_path else "-"
    click.echo(f"prompt {v.id} (revision {v.revision}{', deleted' if v.deleted else ''})")
    click.echo(f"label:    {v.label}")
    click.echo(f"category: {category}")
    click.echo(f"dataset:  {untrusted(v.dataset or '-')}")
    click.echo(f"text:     {untrusted(v.text)}")


def _prompt_filter_options(f):
    for opt in reversed([
        click.option("--search", help="Text contains this (case-insensitive)."),
        click.option("--label", type=click.Choice(LABELS)),
        click.option("--category", help="Category code or exact name (includes the nodes below it)."),
        click.option("--taxonomy", help="Only prompts categorised in this taxonomy."),
        click.option("--dataset", help="Only prompts with a row in this dataset."),
        click.option("--deleted", "include_deleted", is_flag=True, help="Include soft-deleted prompts."),
    ]):
        f = opt(f)
    return f


@prompt.command("list")
@_prompt_filter_options
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
        click.echo(prompt_line(v))
    total = ctx.store.curation.count_prompts(**filters)
    click.echo(f"{len(views)} of {total} prompts", err=True)


@prompt.command("edit")
@click.argument("prompt_id", type=int)
@click.option("--text")
@click.option("--label", type=click.Choice(LABELS))
@click.option("--category", help="Category code or exact name; '' or none clears it.")
@click.option("--taxonomy", help="Taxonomy of --category when ambiguous.")
@json_option
@pass_ctx
def prompt_edit(ctx: Context, prompt_id, text, label, category, taxonomy, as_json) -> None:
    """Edit a prompt's text, label or category (audited; `tstore prompt undo` reverts)."""
    if text is None and label is None and category is None:
        raise InvalidValue("nothing to change", "give --text, --label or --category")
    v = ctx.store.curation.update_prompt(prompt_id, text=text, label=label, category=category, taxonomy=taxonomy)
    emit_json(v.to_dict()) if as_json else click.echo(prompt_line(v))


def _soft_delete_command(method: str, verb: str, help_text: str):
    """`prompt delete` and `prompt restore`: one prompt id in, its new state out."""

    @click.argument("prompt_id", type=int)
    @json_option
    @pass_ctx
    def command(ctx: Context, prompt_id: int, as_json: bool) -> None:
        v = getattr(ctx.store.curation, method)(prompt_id)
        emit_json(v.to_dict()) if as_json else click.echo(f"{verb} prompt {v.id}")

    command.__doc__ = help_text
    return command


prompt.command("delete")(_soft_delete_command("delete_prompt", "deleted", "Soft-delete a prompt (restore with `tstore prompt restore`)."))
prompt.command("restore")(_soft_delete_command("restore_prompt", "restored", "Restore a soft-deleted prompt."))


@prompt.command("undo")
@click.option("--batch", "batch_id", help="Undo this audit batch (default: the newest curation edit not yet undone).")
@click.option("--cascade", is_flag=True, help="Also undo the later edits of the same prompts and pairs (newest first).")
@json_option
@pass_ctx
def prompt_undo(ctx: Context, batch_id, cascade, as_json) -> None:
    """Undo the newest curation edit (prompt or pair), by replaying the audit log backwards.

    An older batch whose prompts or pairs a later batch changed again is refused (the later
    batch is named); --cascade undoes those later batches with it.
    """
    r = ctx.store.curation.undo(batch_id, cascade=cascade)
    if as_json:
        emit_json(r.to_dict())
        return
    for b in r.cascaded:
        click.echo(f"undid later batch {b}")
    click.echo(f"undid batch {r.undone_batch}: {', '.join(r.entities) or 'no changes'}")
