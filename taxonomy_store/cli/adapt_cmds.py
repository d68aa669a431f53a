"""`tstore adapt` and `tstore encoder export`."""

from __future__ import annotations

import click

from .app import Context, cli, emit_json, json_option, pass_ctx, stdout_console
from .embed_cmds import _progress_bar
from .encoder_cmds import encoder

ROWS = ("cp@10_macro", "separation_norm_macro", "contrast_max_norm_mean", "guard_auroc", "everyday_spearman", "baseline")
LOWER_IS_BETTER = {"separation_norm_macro", "contrast_max_norm_mean"}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _table(result) -> None:
    from rich.table import Table

    from ..text import inert

    before, after = result.figures["from"], result.figures["new"]
    part = "held-out prompts" if result.held_out else "the whole store (trained on)"
    t = Table(title=f"{inert(result.adapted_from)} vs {inert(result.name)} on {part} ({after.get('prompts', 0)} prompts)")
    for col in ("metric", inert(result.adapted_from), inert(result.name), "change"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    per_type = sorted(k for k in after if k.startswith("separation_norm.") and k != "separation_norm_macro")
    for key in (*ROWS[:2], *per_type, *ROWS[2:]):
        if key not in after and key not in before:
            continue
        b, a = before.get(key), after.get(key)
        change = "-" if a is None or b is None else f"{a - b:+.3f}"
        label = f"  {key.split('.', 1)[1]}" if key in per_type else key + (" (lower is better)" if key in LOWER_IS_BETTER else "")
        t.add_row(label, _fmt(b), _fmt(a), change)
    stdout_console().print(t)


@cli.command("adapt")
@click.option("--from", "source", required=True, metavar="ENCODER", help="Registered encoder to start from.")
@click.option("--name", "new", required=True, metavar="NEW", help="Name of the tuned encoder to register.")
@click.option("--level", default="harm_type", show_default=True, help="Taxonomy level of the categories to gather.")
@click.option("--taxonomy", default="do-not-answer", show_default=True, help="Taxonomy of the categories.")
@click.option("--epochs", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds training and the held-out split.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "mps"]), default="cpu", show_default=True)
@click.option("--holdout-fraction", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=None,
              help="Hold out this share (prompts within each category, whole pair types) and report on it.")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, hidden=True)
@json_option
@pass_ctx
def adapt(ctx: Context, source: str, new: str, level: str, taxonomy: str, epochs: int, seed: int, device: str,
          holdout_fraction: float | None, max_steps: int | None, as_json: bool) -> None:
    """Fine-tune a copy of an encoder on the store's curated data, register it, embed the store, compare.

    Categories gather, safe twins move away from their unsafe originals, everyday geometry is
    kept. Interrupting leaves no half-registered encoder.
    """
    with _progress_bar("adapt") as progress:
        result = ctx.store.adaptation.adapt(source, new, taxonomy=taxonomy, level=level, epochs=epochs, seed=seed,
                                            device=device, holdout_fraction=holdout_fraction, max_steps=max_steps,
                                            progress=progress)
    if as_json:
        emit_json(result.to_dict())
        return
    _table(result)
    click.echo(f"encoder {result.name} registered (tuned from {result.adapted_from}, {result.training['steps']} steps) "
               f"in {result.seconds:.0f} s; export it with `tstore encoder export {result.name} DIR`")


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
    click.echo(f"encoder {name} written to {path}")
