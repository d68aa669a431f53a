"""`tstore demo`: a small store from our demo set, embedded, measured and queried in one command."""

from __future__ import annotations

import time

import click

from taxonomy_store.vocabulary import DEFAULT_LEVEL, DO_NOT_ANSWER_TAXONOMY
from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import json_option
from taxonomy_store.cli.render import echo_untrusted, emit_json, print_query_result, progress_bar, untrusted
from taxonomy_store.cli.render_metrics import print_metric_run


@cli.command()
@click.option("--store", "demo_store", metavar="DIR", default=None, help="Where to build the demo store [default: the global --store, else ./tstore-demo].")
@json_option
@pass_ctx
def demo(ctx: Context, demo_store: str, as_json: bool) -> None:
    """Build a store from our demo set, embed it, print CP, separation and detection, run a query.

    Runs on the embedded defaults (SQLite, embedded Chroma, all-MiniLM-L6-v2); running it
    again re-imports and re-encodes nothing.
    """
    from taxonomy_store.workflows.demo import DEMO_QUERY, build_demo_store

    started = time.perf_counter()
    say = (lambda m: echo_untrusted(m, err=True))
    with progress_bar() as progress:
        build = build_demo_store(demo_store or ctx.store_arg or "tstore-demo", progress=progress, say=say)
        store = build.store
        say("metrics: baseline, CP@10 per harm type, separation per pair type, contrast boundary, kNN detection")
        runs = store.metric_runs.compute("all", k=10, level=DEFAULT_LEVEL, taxonomy=DO_NOT_ANSWER_TAXONOMY, progress=progress)
        calibration = store.guard.calibrate()
        (result,) = store.guard.query([DEMO_QUERY], k=10, level=DEFAULT_LEVEL)
    seconds = time.perf_counter() - started
    if as_json:
        emit_json({
            "store": str(store.dir),
            "imports": [s.to_dict() for s in build.imports],
            "embed": build.embed.to_dict() if build.embed else None,
            "metrics": [r.to_dict() for r in runs],
            "calibration": calibration.to_dict(),
            "query": result.to_dict(),
            "seconds": round(seconds, 2),
        })
        return
    for r in runs:
        print_metric_run(r)
        click.echo()
    click.echo(f"calibrated unsafe threshold {calibration.threshold:.3f} (scorer {calibration.scorer}; out of fold: "
               f"precision {calibration.precision:.3f}, recall {calibration.recall:.3f}, FPR {calibration.fpr:.3f})")
    # the figure that predicts unseen prompts, beside the optimistic one
    click.echo(f"AUROC on held-out folds (grouped cross-validation) {calibration.auroc:.3f}   "
               f"in-sample leave-one-out {calibration.in_sample_auroc:.3f}")
    for w in calibration.warnings:
        echo_untrusted(f"warning: {w}")
    click.echo()
    click.echo(f"sample query: {untrusted(DEMO_QUERY)}")
    print_query_result(result, single=True, show=5)
    click.echo()
    click.echo(f"demo finished in {seconds:.0f}s; explore it with `tstore --store {untrusted(store.dir)} tui`")
