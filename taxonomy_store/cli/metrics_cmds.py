"""`tstore metrics cp|separation|contrast|detect|baseline|all|history`, `tstore metrics --stale`.

Thin client of `store.metrics`; no torch, sentence-transformers or chromadb import here (the
vectors are read through the facade only when a run needs them).
"""

from __future__ import annotations

from contextlib import contextmanager

import click

from .app import Context, cli, emit_json, json_option, pass_ctx, stderr_console, stdout_console
from .encoder_cmds import encoder as encoder_group


@contextmanager
def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    tasks: dict[str, int] = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=stderr_console(), transient=True) as bar:

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield progress


def _fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _print_run(r) -> None:
    from rich.markup import escape
    from rich.table import Table

    from ..text import inert

    con = stdout_console()
    v = r.values
    d = r.details
    head = f"[bold]{r.metric}[/] · encoder [cyan]{escape(r.encoder)}[/] · data revision {r.data_revision} · run {r.id}"
    if r.metric == "cp":
        k = r.params["k"]
        t = Table(title=f"Categorical Purity CP@{k} per {escape(r.params['level'])} ({escape(r.params['taxonomy'])})", title_justify="left")
        t.add_column("category")
        t.add_column("name")
        t.add_column("prompts", justify="right")
        t.add_column(f"CP@{k}", justify="right")
        for code, row in d.get("per_category", {}).items():
            t.add_row(escape(code), escape(inert(str(row.get("name") or ""))[:60]), str(row["prompts"]), _fmt(row.get("cp")))
        t.add_section()
        t.add_row("macro mean", "", str(d.get("prompts", "")), _fmt(v.get(f"cp@{k}_macro")))
        t.add_row("micro mean", "", "", _fmt(v.get(f"cp@{k}_micro")))
        t.add_row("chance (macro)", "", "", _fmt(v.get(f"cp@{k}_chance_macro")))
        con.print(head)
        con.print(t)
        g = d.get("graph", {})
        con.print(f"kNN graph: {g.get('source')}, {g.get('recomputed', 0)} rows recomputed, {g.get('seconds', 0):.2f} s")
    elif r.metric == "separation":
        t = Table(title=f"Safety-Challenging separation, pair set {escape(r.params.get('pair_set') or '')} (lower = better)", title_justify="left")
        t.add_column("pair type")
        t.add_column("pairs", justify="right")
        t.add_column("normalised sim", justify="right")
        t.add_column("cosine", justify="right")
        for typ, row in d.get("per_type", {}).items():
            t.add_row(escape(typ), str(row["pairs"]), _fmt(row["norm"]), _fmt(row["cos"]))
        t.add_section()
        t.add_row("macro mean", str(d.get("pairs", "")), _fmt(v.get("separation_norm_macro")), _fmt(v.get("separation_cos_macro")))
        con.print(head)
        con.print(t)
        con.print(f"baseline b = {_fmt(d.get('baseline'), 4)} ({(d.get('baseline_source') or {}).get('source')})")
    elif r.metric == "contrast":
        t = Table(title=f"Safety-Contrast boundary, pair set {escape(r.params.get('pair_set') or '')} (max normalised sim per unsafe prompt)", title_justify="left")
        t.add_column("statistic")
        t.add_column("value", justify="right")
        for name in ("unsafe_prompts", "variants_mean", "contrast_max_norm_mean", "contrast_max_cos_mean") + tuple(
            n for n in v if n.startswith("contrast_max_norm_q")
        ):
            if name in v:
                t.add_row(name, _fmt(v[name]))
        con.print(head)
        con.print(t)
        h = d.get("histogram", {})
        edges, counts = h.get("edges", []), h.get("counts", [])
        for i, c in enumerate(counts):
            con.print(f"  [{edges[i]:.1f}, {edges[i + 1]:.1f}) {'█' * min(c, 60)} {c}")
    elif r.metric == "detect":
        k = r.params["k"]
        t = Table(title=f"kNN safety detection, leave-one-out, k={k} ({escape(d.get('weighting', ''))} weighted)", title_justify="left")
        t.add_column("metric")
        t.add_column("value", justify="right")
        for name in (f"detect_auroc@{k}", f"detect_f1@{k}", f"detect_threshold@{k}", f"detect_precision@{k}",
                     f"detect_recall@{k}", f"detect_fpr@{k}", f"category_accuracy@{k}", "n_unsafe", "n_safe"):
            if name in v:
                t.add_row(name, _fmt(v[name]) if not name.startswith("n_") else str(int(v[name] or 0)))
        con.print(head)
        con.print(t)
        worst = d.get("likely_mislabeled", [])[:10]
        if worst:
            w = Table(title="prompts whose neighbours most disagree with their label", title_justify="left")
            for c in ("prompt id", "label", "unsafe score", "label agreement"):
                w.add_column(c)
            for row in worst:
                w.add_row(str(row["prompt_id"]), row["label"], _fmt(row["unsafe_score"]), _fmt(row["label_agreement"]))
            con.print(w)
    elif r.metric == "baseline":
        est = d.get("estimate", {})
        con.print(head)
        con.print(f"estimated baseline b = {_fmt(v.get('baseline_estimate'), 4)} over {est.get('pairs')} pairs "
                  f"({est.get('sample_a')} x {est.get('sample_b')}, seed {est.get('seed')}); stored b = {_fmt(d.get('stored_baseline'), 4)}")
    for name, why in (d.get("skipped") or {}).items():
        click.echo(f"skipped {name}: {why}", err=True)


def _compute(ctx: Context, metric: str, encoder, all_encoders, k, level, taxonomy, pair_set, weighting, as_json) -> None:
    store = ctx.store
    if all_encoders and encoder:
        from ..errors import InvalidValue

        raise InvalidValue("give either --encoder or --all, not both")
    names = [e.name for e in store.encoders.list()] if all_encoders else [encoder]
    results = []
    with _progress() as progress:
        for name in names:
            results += store.metrics.compute(metric, encoder=name, k=k, level=level, taxonomy=taxonomy, pair_set=pair_set,
                                             weighting=weighting, progress=progress)
    for r in results:
        if as_json:
            emit_json(r.to_dict())
        else:
            _print_run(r)


def _metric_command(metric: str, help_text: str):
    @click.option("--encoder", "-e", "encoder", metavar="NAME", envvar="TSTORE_ENCODER", help="Encoder whose vectors to use [env TSTORE_ENCODER; default minilm].")
    @click.option("--all", "all_encoders", is_flag=True, help="Every registered encoder.")
    @click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbours per prompt (CP, detection).")
    @click.option("--level", default="harm_type", show_default=True, help="Taxonomy level for CP and category accuracy (name or depth).")
    @click.option("--taxonomy", default="do-not-answer", show_default=True, help="Taxonomy of the categories.")
    @click.option("--pair-set", default=None, metavar="NAME", help="Only this pair set (separation, contrast); default every set of the right kind.")
    @click.option("--weighting", type=click.Choice(["similarity", "uniform"]), default="similarity", show_default=True, help="kNN detection vote weights.")
    @json_option
    @pass_ctx
    def command(ctx: Context, encoder, all_encoders, k, level, taxonomy, pair_set, weighting, as_json):
        _compute(ctx, metric, encoder, all_encoders, k, level, taxonomy, pair_set, weighting, as_json)

    command.__doc__ = help_text
    return command


@cli.group(invoke_without_command=True)
@click.option("--stale", is_flag=True, help="Recompute only the runs whose inputs changed since they ran.")
@json_option
@click.pass_context
def metrics(click_ctx: click.Context, stale: bool, as_json: bool) -> None:
    """Safe-Embed metrics from the stored vectors; every run is stored with the data revision it saw."""
    if click_ctx.invoked_subcommand is not None:
        if stale:
            raise click.UsageError("--stale recomputes stored runs; give it without a subcommand")
        return
    ctx: Context = click_ctx.obj
    if not stale:
        click.echo(click_ctx.get_help())
        return
    with _progress() as progress:
        results = ctx.store.metrics.recompute_stale(progress=progress)
    if as_json:
        for r in results:
            emit_json(r.to_dict())
        return
    if not results:
        click.echo("no stale runs: every stored run saw the current data")
        return
    for r in results:
        _print_run(r)


_HELP = {
    "cp": "Categorical Purity CP@k per category (macro and micro means) over unsafe categorised prompts.",
    "separation": "Safety-Challenging separation: mean normalised similarity of unsafe/safe pairs per pair type.",
    "contrast": "Safety-Contrast boundary: max normalised similarity of each unsafe prompt to its safe variants.",
    "detect": "kNN safety detection, leave-one-out: AUROC, best-F1 threshold, category accuracy, likely mislabels.",
    "baseline": "Estimate the encoder's baseline similarity b (seeded 500 x 500 cross sample); stores a run, sets nothing.",
    "all": "Every metric the store has data for.",
}
for _name, _text in _HELP.items():
    metrics.command(_name, help=_text)(_metric_command(_name, _text))


@metrics.command("history")
@click.option("--metric", default=None, help="Only this metric.")
@click.option("--encoder", "-e", "encoder", metavar="NAME", default=None, help="Only this encoder.")
@json_option
@pass_ctx
def history(ctx: Context, metric: str | None, encoder: str | None, as_json: bool) -> None:
    """Stored runs, oldest first: how each metric moved as the data changed."""
    runs = ctx.store.metrics.history(metric=metric, encoder=encoder)
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
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"metric runs (current data revision {rev})", title_justify="left")
    for c in ("run", "when (UTC)", "encoder", "metric", "parameters", "primary", "value", "data rev", ""):
        t.add_column(c)
    prev: dict[tuple, float] = {}
    for r in runs:
        params = ", ".join(f"{k}={v}" for k, v in r.params.items() if v is not None and k != "weighting")
        key = (r.encoder, r.metric, params)
        delta = ""
        if r.primary_value is not None and key in prev:
            diff = r.primary_value - prev[key]
            delta = f" ({diff:+.3f})" if abs(diff) >= 5e-4 else ""
        if r.primary_value is not None:
            prev[key] = r.primary_value
        t.add_row(str(r.id), (r.created_at or "")[:19], escape(r.encoder), r.metric, escape(params), r.primary_name or "",
                  _fmt(r.primary_value, 4) + delta, str(r.data_revision), "stale" if r.data_revision < rev else "")
    stdout_console().print(t)


if "estimate-baseline" not in encoder_group.commands:

    @encoder_group.command("estimate-baseline")
    @click.argument("name")
    @click.option("--sample", type=click.IntRange(min=2), default=500, show_default=True, help="Prompts per side of the cross sample.")
    @click.option("--seed", type=int, default=0, show_default=True)
    @click.option("--dry-run", is_flag=True, help="Print the estimate without storing it as the encoder's baseline.")
    @json_option
    @pass_ctx
    def estimate_baseline(ctx: Context, name: str, sample: int, seed: int, dry_run: bool, as_json: bool) -> None:
        """Estimate b from the stored vectors (mean cosine of a seeded cross sample, half safe half unsafe) and set it."""
        est = ctx.store.metrics.estimate_baseline(name, sample=sample, seed=seed, store=not dry_run)
        if as_json:
            emit_json(est)
            return
        verb = "estimated" if dry_run else "set"
        click.echo(f"encoder {name}: baseline b = {est['baseline']:.4f} {verb} ({est['pairs']} pairs, {est['sample_a']} x {est['sample_b']}, seed {seed})")
