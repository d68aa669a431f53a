"""`tstore metrics cp|separation|contrast|detect|baseline|all|history`, `tstore metrics --stale`.

Thin client of `store.metric_runs`; no torch, sentence-transformers or chromadb import here (the
vectors are read through the facade only when a run needs them).
"""

from __future__ import annotations

import click

from taxonomy_store.errors import InvalidValue
from taxonomy_store.vocabulary import DEFAULT_LEVEL, DEFAULT_TAXONOMY
from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import all_encoders_option, encoder_option, exact_option, json_option, ray_option
from taxonomy_store.cli.render import emit_json, progress_bar
from taxonomy_store.cli.render_metrics import print_metric_run, print_run_history


def _compute_and_show(ctx: Context, metric: str, encoder, all_encoders, k, level, taxonomy, pair_set, weighting, as_json,
                      via_crosswalk: bool = False, ray_address: str | None = None, exact: bool = False) -> None:
    store = ctx.store
    if ray_address:
        store.use_ray(ray_address)
    if exact:
        store.exact_neighbours()
    if all_encoders and encoder:
        raise InvalidValue("give either --encoder or --all, not both")
    names = [e.name for e in store.encoders.list()] if all_encoders else [encoder]
    results = []
    with progress_bar() as progress:
        for name in names:
            results += store.metric_runs.compute(metric, encoder=name, k=k, level=level, taxonomy=taxonomy, pair_set=pair_set,
                                             weighting=weighting, progress=progress, via_crosswalk=via_crosswalk)
    if via_crosswalk and not any(r.params.get("via_crosswalk") for r in results):
        click.echo(f"warning: no accepted crosswalk onto {taxonomy!r}: the run counts {taxonomy!r} prompts only", err=True)
    for r in results:
        if as_json:
            emit_json(r.to_dict())
        else:
            print_metric_run(r)


def _metric_command(metric: str, help_text: str):
    @encoder_option("Encoder whose vectors to use [env TSTORE_ENCODER; default minilm].")
    @all_encoders_option
    @click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbours per prompt (CP, detection).")
    @click.option("--level", default=DEFAULT_LEVEL, show_default=True, help="Taxonomy level for CP and category accuracy (name or depth).")
    @click.option("--taxonomy", default=DEFAULT_TAXONOMY, show_default=True, help="Taxonomy of the categories.")
    @click.option("--pair-set", default=None, metavar="NAME", help="Only this pair set (separation, contrast); default every set of the right kind.")
    @click.option("--weighting", type=click.Choice(["similarity", "uniform"]), default="similarity", show_default=True, help="kNN detection vote weights.")
    @exact_option
    @ray_option
    @json_option
    @pass_ctx
    def command(ctx: Context, encoder, all_encoders, k, level, taxonomy, pair_set, weighting, exact, ray_address, as_json,
                via_crosswalk=False):
        _compute_and_show(ctx, metric, encoder, all_encoders, k, level, taxonomy, pair_set, weighting, as_json, via_crosswalk,
                          ray_address, exact)

    command.__doc__ = help_text
    if metric == "cp":
        command = click.option(
            "--via-crosswalk", "via_crosswalk", is_flag=True,
            help="Also count prompts of other taxonomies mapped onto --taxonomy by an accepted crosswalk.",
        )(command)
    return command


@cli.group(invoke_without_command=True)
@click.option("--stale", is_flag=True, help="Recompute only the runs whose inputs changed since they ran.")
@ray_option
@json_option
@click.pass_context
def metrics(click_ctx: click.Context, stale: bool, ray_address: str | None, as_json: bool) -> None:
    """Safe-Embed metrics from the stored vectors; every run is stored with the data revision it saw."""
    if click_ctx.invoked_subcommand is not None:
        if stale:
            raise click.UsageError("--stale recomputes stored runs; give it without a subcommand")
        if ray_address:  # `tstore metrics --ray ADDRESS cp`: the subcommand's store uses the cluster
            click_ctx.obj.store.use_ray(ray_address)
        return
    ctx: Context = click_ctx.obj
    if not stale:
        click.echo(click_ctx.get_help())
        return
    if ray_address:
        ctx.store.use_ray(ray_address)
    with progress_bar() as progress:
        results = ctx.store.metric_runs.recompute_stale(progress=progress)
    if as_json:
        for r in results:
            emit_json(r.to_dict())
        return
    if not results:
        click.echo("no stale runs: every stored run saw the current data")
        return
    for r in results:
        print_metric_run(r)


METRIC_HELP = {
    "cp": "Categorical Purity CP@k per category (macro and micro means) over unsafe categorised prompts.",
    "separation": "Safety-Challenging separation: mean normalised similarity of unsafe/safe pairs per pair type.",
    "contrast": "Safety-Contrast boundary: max normalised similarity of each unsafe prompt to its safe variants.",
    "detect": "kNN safety detection, leave-one-out: AUROC, best-F1 threshold, category accuracy, likely mislabels.",
    "baseline": "Estimate the encoder's baseline similarity b (seeded 500 x 500 cross sample); stores a run, sets nothing.",
    "all": "Every metric the store has data for.",
}
for _name, _text in METRIC_HELP.items():
    metrics.command(_name, help=_text)(_metric_command(_name, _text))


@metrics.command("history")
@click.option("--metric", default=None, help="Only this metric.")
@click.option("--encoder", "-e", "encoder", metavar="NAME", default=None, help="Only this encoder.")
@json_option
@pass_ctx
def history(ctx: Context, metric: str | None, encoder: str | None, as_json: bool) -> None:
    """Stored runs, oldest first: how each metric moved as the data changed."""
    runs = ctx.store.metric_runs.history(metric=metric, encoder=encoder)
    rev = ctx.store.data_revision()
    if as_json:
        for r in runs:
            d = r.to_dict()
            d.pop("details", None)
            d["stale"] = r.data_revision < rev
            emit_json(d)
        return
    if not runs:
        click.echo("no metric runs yet; try `tstore metrics all`")
        return
    print_run_history(runs, rev)

