"""`tstore tui`: the curators' Textual app over the store."""

from __future__ import annotations

import click

from taxonomy_store.vocabulary import DEFAULT_TAXONOMY
from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import encoder_option

SCREENS = ("taxonomy", "prompts", "pairs", "suspects", "metrics", "query", "crosswalk")


@cli.command("tui")
@encoder_option("Encoder whose scores and neighbours to show [env TSTORE_ENCODER; default minilm].")
@click.option("--taxonomy", default=None, help=f"Taxonomy to browse and score against [default: {DEFAULT_TAXONOMY} when loaded, else the store's first].")
@click.option("--screen", type=click.Choice(SCREENS), default="taxonomy", show_default=True, help="Screen to open first.")
@pass_ctx
def tui(ctx: Context, encoder: str | None, taxonomy: str | None, screen: str) -> None:
    """Open the curators' app: taxonomy, prompts, pair review, suspects, metrics, query, crosswalk."""
    from taxonomy_store.tui import make_app  # textual loads only for this command

    store = ctx.store
    make_app(store, encoder=encoder, taxonomy=taxonomy, start=screen).run()
