"""`tstore pair list|accept|reject|add`: reviewing unsafe/safe pairs."""

from __future__ import annotations

import click

from taxonomy_store.vocabulary import PAIR_STATUSES
from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import json_option
from taxonomy_store.cli.render import emit_json, untrusted



@cli.group()
def pair() -> None:
    """List, accept, reject and add unsafe/safe pairs."""


@pair.command("list")
@click.option("--status", type=click.Choice(PAIR_STATUSES))
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
            f"{v.id}\t{v.status}\t{untrusted(v.pair_set)}\t{untrusted(v.pair_type or '-')}"
            f"\tunsafe {v.unsafe_prompt_id}: {untrusted(v.unsafe_text)}\tsafe {v.safe_prompt_id}: {untrusted(v.safe_text)}"
        )


def _decision_command(status: str, help_text: str):
    """`pair accept` and `pair reject`: a pair id and an optional note in, the decided pair out."""

    @click.argument("pair_id", type=int)
    @click.option("--note")
    @json_option
    @pass_ctx
    def command(ctx: Context, pair_id: int, note: str | None, as_json: bool) -> None:
        v = ctx.store.curation.decide_pair(pair_id, status, note)
        emit_json(v.to_dict()) if as_json else click.echo(f"pair {v.id} {v.status}")

    command.__doc__ = help_text
    return command


pair.command("accept")(_decision_command("accepted", "Accept a pair."))
pair.command("reject")(_decision_command("rejected", "Reject a pair."))


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
