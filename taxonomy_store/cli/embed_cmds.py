"""`tstore embed` and `tstore verify`: keeping each encoder's Chroma collection in step with SQL."""

from __future__ import annotations

import click

from taxonomy_store.errors import IndexOutOfSync
from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import all_encoders_option, encoder_option, json_option, no_wait_option, ray_option
from taxonomy_store.cli.render import emit_json, progress_bar, untrusted


@cli.command("embed")
@encoder_option()
@all_encoders_option
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Override the encoder's batch size for this run.")
@no_wait_option
@ray_option
@json_option
@pass_ctx
def embed(
    ctx: Context, encoder: str | None, all_encoders: bool, batch_size: int | None, no_wait: bool, ray_address: str | None,
    as_json: bool,
) -> None:
    """Embed new and changed prompts, drop vectors of deleted ones, refresh changed labels/categories.

    Only prompts whose text that encoder has not embedded yet are encoded. Safe to interrupt:
    run it again and it finishes the job. One process writes a store's embedded index at a
    time: a second `embed` waits for the first (or fails at once with --no-wait). With --ray the
    encoding runs on the cluster's workers (one encoder per node) and this process writes.
    """
    store = ctx.store
    if ray_address:
        store.use_ray(ray_address)
    with progress_bar("embedding", transient=False, time_remaining=True) as progress:
        s = store.embeddings.embed(
            None if all_encoders else encoder, all=all_encoders, progress=progress, batch_size=batch_size, wait=not no_wait
        )
    if as_json:
        emit_json(s.to_dict())
        return
    click.echo(
        f"{', '.join(untrusted(n) for n in s.encoders)}: {s.embedded} embedded, {s.updated} updated, {s.deleted} deleted, "
        f"{s.unchanged} unchanged in {s.seconds:.1f} s ({s.sentences_per_s:.1f} sentences/s)"
    )


@cli.command("verify")
@encoder_option()
@all_encoders_option
@click.option("--repair", is_flag=True, help="Fix what differs (re-embeds missing, stale and unreadable vectors).")
@no_wait_option
@json_option
@pass_ctx
def verify(ctx: Context, encoder: str | None, all_encoders: bool, repair: bool, no_wait: bool, as_json: bool) -> None:
    """Compare SQL with each encoder's Chroma collection: missing, orphaned, stale, wrong metadata.

    Reads every vector back and reports those that cannot be read or have the wrong dimension.
    Exits non-zero when something differs and --repair was not given. Without --repair it never
    loads a model and never waits for a writer; --repair writes, one writer at a time.
    """
    store = ctx.store
    if repair:
        with progress_bar("repairing", transient=False, time_remaining=True) as progress:
            result = store.embeddings.verify(
                None if all_encoders else encoder, all=all_encoders, repair=True, progress=progress, wait=not no_wait
            )
    else:
        result = store.embeddings.verify(None if all_encoders else encoder, all=all_encoders)
    reports = result if isinstance(result, list) else [result]
    for r in reports:
        if as_json:
            emit_json(r.to_dict())
            continue
        state = "ok" if r.ok else ("repaired" if r.repaired is not None else "OUT OF SYNC")
        click.echo(
            f"{untrusted(r.encoder)}: {state} — {r.prompts} prompts, {r.vectors} vectors; missing {r.missing}, orphaned {r.orphaned}, "
            f"stale {r.stale}, wrong metadata {r.wrong_metadata}, bookkeeping {r.bookkeeping}, "
            f"unreadable {r.unreadable}, wrong dimension {r.wrong_dimension}"
        )
        if r.repaired is not None:
            x = r.repaired
            click.echo(f"  repair: {x['embedded']} embedded, {x['updated']} updated, {x['deleted']} deleted")
    bad = [r for r in reports if not r.ok and r.repaired is None]
    if bad:
        raise IndexOutOfSync(
            f"{len(bad)} encoder(s) disagree with SQL: {', '.join(r.encoder for r in bad)}",
            "run `tstore verify --repair` (or `tstore embed`)",
        )
