"""`tstore adapt`: tune an encoder on the store's curated data and compare it with its base."""

from __future__ import annotations

import click

from taxonomy_store.adapt.training import METHOD_DEFAULTS
from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import json_option
from taxonomy_store.cli.render import emit_json, fmt_value, progress_bar, stdout_console, table, untrusted

ROWS = ("cp@10_macro", "separation_norm_macro", "contrast_max_norm_mean", "guard_auroc", "everyday_spearman", "baseline")
LOWER_IS_BETTER = {"separation_norm_macro", "contrast_max_norm_mean"}


def _table(result) -> None:
    before, after = result.figures["from"], result.figures["new"]
    part = "held-out prompts" if result.held_out else "the whole store (trained on)"
    a, b = untrusted(result.adapted_from), untrusted(result.name)
    t = table(f"{a} vs {b} on {part} ({after.get('prompts', 0)} prompts)", ("metric", a, b, "change"), right=(a, b, "change"))
    per_type = sorted(k for k in after if k.startswith("separation_norm.") and k != "separation_norm_macro")
    for key in (*ROWS[:2], *per_type, *ROWS[2:]):
        if key not in after and key not in before:
            continue
        old, new = before.get(key), after.get(key)
        change = "-" if old is None or new is None else f"{new - old:+.3f}"
        label = f"  {key.split('.', 1)[1]}" if key in per_type else key + (" (lower is better)" if key in LOWER_IS_BETTER else "")
        t.add_row(label, fmt_value(old), fmt_value(new), change)
    stdout_console().print(t)


@cli.command("adapt")
@click.option("--from", "source", required=True, metavar="ENCODER", help="Registered encoder to start from.")
@click.option("--name", "new", required=True, metavar="NEW", help="Name of the tuned encoder to register.")
@click.option("--level", default="harm_type", show_default=True, help="Taxonomy level of the categories to gather.")
@click.option("--taxonomy", default="do-not-answer", show_default=True, help="Taxonomy of the categories.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help=f"Passes over the training data [default: {METHOD_DEFAULTS['layers']['epochs']}].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds training and the held-out split.")
@click.option("--device", type=click.Choice(["cpu", "cuda", "mps"]), default="cpu", show_default=True)
@click.option("--holdout-fraction", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=None,
              help="Hold out this share (prompts within each category, whole pair types) and report on it; "
                   "the guard's held-out figures (calibrate, evaluate) are then computed on these prompts.")
@click.option("--anchor", type=click.FloatRange(min=0.0), default=None, metavar="W",
              help="Weight of the anchor term: every training prompt but the safe twins stays near FROM's vector, so "
                   "prompts of datasets the store lacks keep their neighbourhoods [default: "
                   f"{METHOD_DEFAULTS['layers']['w_anchor']:g}; 10 measured in docs/BENCHMARKS.md].")
@click.option("--label-weight", type=click.FloatRange(min=0.0), default=None, metavar="W",
              help="Weight of the safe/unsafe contrast term [default: 1; 3 measured in docs/BENCHMARKS.md].")
@click.option("--aim-swaps/--random-swaps", default=True, show_default=True,
              help="Aim the sensitivity term's one-word swaps: keep each prompt's most harm-leaning word and swap "
                   "what it is aimed at for an everyday object (\"kill my neighbour\" -> \"kill my teapot\"); "
                   "--random-swaps swaps a random word (the recipe before round seven; docs/BENCHMARKS.md).")
@click.option("--everyday/--no-everyday", default=True, show_default=True,
              help="Train on tstore's 320 built-in everyday requests too (ordinary safe traffic, written for tstore; "
                   "seeds/everyday), beside the store's own prompts, so that a store of safety benchmarks does not "
                   "teach the encoder \"safe\" from look-alike twins alone (docs/BENCHMARKS.md, round seven).")
@click.option("--max-steps", type=click.IntRange(min=1), default=None, hidden=True)
@json_option
@pass_ctx
def adapt(ctx: Context, source: str, new: str, level: str, taxonomy: str, epochs: int | None, seed: int, device: str,
          holdout_fraction: float | None, anchor: float | None, label_weight: float | None, aim_swaps: bool,
          everyday: bool, max_steps: int | None, as_json: bool) -> None:
    """Fine-tune a copy of an encoder on the store's curated data, register it, embed the store, compare.

    Categories gather, safe twins move away from their unsafe originals, a prompt with one word
    swapped moves away from the prompt, everyday geometry is kept. Interrupting leaves no
    half-registered encoder. The texts it trained on are recorded in its model folder
    (tstore-training.json): `calibrate`, `evaluate` and `metrics` call a figure held out only on
    prompts it never trained on.
    """
    with progress_bar(transient=False, time_remaining=True) as progress:
        result = ctx.store.adaptation.adapt(source, new, taxonomy=taxonomy, level=level, epochs=epochs, seed=seed,
                                            device=device, holdout_fraction=holdout_fraction, max_steps=max_steps,
                                            anchor=anchor, label_weight=label_weight, aim_swaps=aim_swaps,
                                            everyday=everyday, progress=progress)
    if as_json:
        emit_json(result.to_dict())
        return
    _table(result)
    click.echo(f"encoder {untrusted(result.name)} registered (tuned from {untrusted(result.adapted_from)}, "
               f"{result.training['steps']} steps) in {result.seconds:.0f} s; "
               f"export it with `tstore encoder export {untrusted(result.name)} DIR`")
    guard, new = untrusted(f"{result.name}-guard"), untrusted(result.name)
    click.echo(f"for the guard, use it beside its base: `tstore encoder combine {guard} {untrusted(result.adapted_from)} {new}`, "
               f"`tstore embed --encoder {guard}`, then `tstore calibrate -e {guard}` "
               "(measured better than either alone on datasets never trained on: docs/BENCHMARKS.md, round seven)")
