"""`tstore taxonomy load|list|show`."""

from __future__ import annotations

import click

from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import json_option
from taxonomy_store.cli.render import emit_json, markup, stdout_console, untrusted


@cli.group(invoke_without_command=True)
@click.pass_context
def taxonomy(click_ctx: click.Context) -> None:
    """Taxonomies of harm categories and pair types (default: list)."""
    if click_ctx.invoked_subcommand is None:
        click_ctx.invoke(list_cmd)


@taxonomy.command("load")
@click.argument("name_or_file")
@json_option
@pass_ctx
def load(ctx: Context, name_or_file: str, as_json: bool) -> None:
    """Load a built-in taxonomy (do-not-answer, xstest-pair-types, ailuminate-v1) or a YAML/JSON file.

    Loading again updates names and descriptions by node code; it never duplicates.
    """
    r = ctx.store.taxonomies.load(name_or_file)
    if as_json:
        emit_json(r.__dict__)
        return
    verb = "created" if r.created else "updated"
    msg = f"taxonomy {untrusted(r.name)} {verb}: {r.nodes_added} nodes added, {r.nodes_updated} updated, {r.nodes_unchanged} unchanged"
    if r.nodes_kept:
        msg += f", {r.nodes_kept} kept that the file no longer lists"
    click.echo(msg)


@taxonomy.command("list")
@json_option
@pass_ctx
def list_cmd(ctx: Context, as_json: bool) -> None:
    """List the store's taxonomies."""
    rows = ctx.store.taxonomies.list()
    if as_json:
        for r in rows:
            emit_json(r)
        return
    if not rows:
        click.echo("no taxonomies yet; load one with `tstore taxonomy load do-not-answer`")
        return
    for r in rows:
        click.echo(f"{untrusted(r['name'])}\t{r['nodes']} nodes\t{untrusted(' > '.join(r['levels']))}\t{untrusted(r['title'])}")


@taxonomy.command("show")
@click.argument("name")
@click.option("--depth", type=int, default=None, help="Show only this many levels.")
@json_option
@pass_ctx
def show(ctx: Context, name: str, depth: int | None, as_json: bool) -> None:
    """Show a taxonomy as a tree with prompt counts (each node counts its whole subtree)."""
    tree = ctx.store.taxonomies.tree(name)
    if as_json:
        emit_json(tree.to_dict())
        return
    from rich.tree import Tree

    per_level = tree.count_by_depth()
    summary = " / ".join(f"{n} {lvl}" for n, lvl in zip(per_level, tree.levels + [""] * len(per_level)))
    root = Tree(f"[bold]{markup(tree.title)}[/] ({markup(tree.name)}: {markup(summary)}; prompts per node)")

    def add(parent, node):
        # Leaf names can be long "Name: description" texts; their short name reads better.
        shown = node.short_name if node.short_name and not node.children else node.name
        branch = parent.add(f"{markup(shown)} [dim]({markup(node.code)})[/] [green]{node.prompts}[/]")
        if depth is None or node.depth + 1 < depth:
            for c in node.children:
                add(branch, c)

    for r in tree.roots:
        add(root, r)
    stdout_console().print(root)
