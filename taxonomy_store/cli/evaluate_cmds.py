"""`tstore evaluate`: the guard on prompts it has never seen; a thin client of `store.evaluation`."""

from __future__ import annotations

import click

from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import encoder_option, exact_option, json_option, scorer_option
from taxonomy_store.cli.render import echo_untrusted, emit_json, neighbour_line, progress_bar, untrusted


def _pct(v) -> str:
    return "   -  " if v is None else f"{100 * v:5.1f}%"


def _held_out_name(split) -> str:
    """What the held-out AUROC is computed on; runs stored before tuned encoders were told apart say `held-out`."""
    if split.get("contaminated"):
        return "on the held-out set, trained on (NOT held out)"
    return "held-out" if not split.get("trained_on") else f"held out on {split['held_out_basis']}"


def _cv_name(split) -> str:
    if split.get("cv_contaminated"):
        return "grouped-CV (trained on, NOT held out)"
    basis = split.get("cv_basis") or ""
    return f"grouped-CV on {basis.split(' (')[0]}" if basis.startswith("never-trained") else "grouped-CV"


def print_evaluation(run) -> None:
    """Per held-out set: verdict shares, recall / flagged, AUROC, beside the calibration's own figures."""
    for split in run.details.get("splits", []):
        held = ", ".join(untrusted(d) for d in split["held_out"])
        auroc = "n/a" if split.get("auroc") is None else f"{split['auroc']:.4f}"
        click.echo(f"held out {held}: {split['prompts']} prompts; calibrated without them on {split['reference']} "
                   f"(scorer {split['scorer']}, threshold {split['threshold']:.4f})")
        click.echo(f"  AUROC {_held_out_name(split)} {auroc}   {_cv_name(split)} {split['cv_auroc']:.4f}   "
                   f"in-sample (leave-one-out) {split['in_sample_auroc']:.4f}")
        if split.get("trained_on"):
            click.echo(f"  {untrusted(run.encoder)} was trained on {split['trained_on']} of the held-out prompts: "
                       + ("every figure below is NOT held out" if split.get("contaminated") else "they are left out of the figures"))
        click.echo(f"  {'dataset':<22} {'n':>5}  {'unsafe':>6}  {'uncert.':>6}  {'safe':>6}  {'caught':>6}  {'flagged':>7}  {'category':>8}")
        for d, f in split["datasets"].items():
            click.echo(f"  {untrusted(d):<22} {f['n']:>5}  {_pct(f['unsafe'])}  {_pct(f['uncertain'])}  {_pct(f['safe'])}  "
                       f"{_pct(f.get('recall'))}  {_pct(f.get('flagged'))}   {_pct(f.get('category_accuracy'))}")
        if (how_found := neighbour_line(split.get("neighbour_search"))) is not None:
            click.echo(f"  {how_found}")
        for w in split.get("warnings", []):
            echo_untrusted(f"  warning: {w}")
    click.echo(f"stored as metric run {run.id} (data revision {run.data_revision})")


@cli.command("evaluate")
@encoder_option("Encoder to evaluate [env TSTORE_ENCODER; default minilm].")
@click.option("--holdout", multiple=True, metavar="DATASET", help="Hold this dataset out of the pool, the training and the calibration, then query it (repeatable).")
@click.option("--fraction", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=None, help="Hold out this seeded fraction of each --holdout dataset instead of all of it.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of --fraction.")
@click.option("--by-dataset", is_flag=True, default=False, help="Leave each labeled dataset out in turn.")
@scorer_option
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbours that vote.")
@exact_option
@json_option
@pass_ctx
def evaluate_cmd(ctx: Context, encoder, holdout, fraction, seed, by_dataset, scorer, k, exact, as_json) -> None:
    """How the guard does on prompts it has never seen: verdict shares per held-out dataset at the
    threshold calibrated without them (recall for unsafe sets, flagged rate for safe ones), AUROC
    where both labels are held out. Stored as a metric run (`tstore metrics history`)."""
    if by_dataset and holdout:
        raise click.UsageError("give --holdout DATASET or --by-dataset, not both")
    if not by_dataset and not holdout:
        raise click.UsageError("give --holdout DATASET (repeatable) or --by-dataset")
    if fraction is not None and not holdout:
        raise click.UsageError("--fraction needs --holdout")
    if exact:
        ctx.store.exact_neighbours()
    with progress_bar("evaluating") as progress:
        run = ctx.store.evaluation.evaluate(
            encoder=encoder, holdout=list(holdout), fraction=fraction, seed=seed, by_dataset=by_dataset, k=k, scorer=scorer,
            progress=progress,
        )
    if as_json:
        emit_json(run.to_dict())
    else:
        print_evaluation(run)
