"""`tstore pair list|accept|reject|add|propose`: reviewing unsafe/safe pairs, and mining new ones."""

from __future__ import annotations

import click

from taxonomy_store.vocabulary import DEFAULT_TAXONOMY, PAIR_STATUSES
from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import encoder_option, json_option
from taxonomy_store.cli.render import emit_json, progress_bar, untrusted



@cli.group()
def pair() -> None:
    """List, accept, reject, add and propose (mine) unsafe/safe pairs."""


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


@pair.command("propose")
@encoder_option()
@click.option("--taxonomy", default=DEFAULT_TAXONOMY, show_default=True,
              help="Taxonomy whose harm categories decide which proposals are needed most.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="At most this many proposals.")
@click.option("--dry-run", is_flag=True, help="Show the proposals without adding them to the review queue.")
@json_option
@pass_ctx
def pair_propose(ctx: Context, encoder, taxonomy, limit, dry_run, as_json) -> None:
    """Mine candidate safe/unsafe twins from the store and add them to the review queue as proposed.

    Each unsafe prompt's nearest safe prompts (and each safe prompt's nearest unsafe ones) that
    share its topic but not its intent, harm categories and pair types with the fewest pairs first,
    existing pairs skipped; each proposal carries its reason as the pair's note. One undo
    (`tstore prompt undo`) takes the whole run back. Review them with `tstore pair list --status
    proposed` or on the TUI's Pairs screen.
    """
    name = encoder or ctx.store.encoders.default_name()
    with progress_bar(f"mining pairs ({name})") as progress:
        proposals = ctx.store.pair_mining.propose(encoder=name, taxonomy=taxonomy, limit=limit, write=not dry_run,
                                                  progress=progress)
    if as_json:
        for p in proposals:
            emit_json(p.to_dict())
        return
    for p in proposals:
        head = f"pair {p.pair_id}" if p.pair_id is not None else "would propose"
        click.echo(f"{head}\tunsafe {p.unsafe_id}: {untrusted(p.unsafe_text)}\tsafe {p.safe_id}: {untrusted(p.safe_text)}"
                   f"\t{untrusted(p.reason)}")
    verb = "would be proposed (dry run)" if dry_run else "proposed: review them with `tstore pair list --status proposed`"
    click.echo(f"{len(proposals)} pairs {verb}", err=True)
