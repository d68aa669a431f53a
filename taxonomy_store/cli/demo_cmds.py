"""`tstore demo` and `tstore reproduce safe-embed`: the Safe-Embed demo and the paper's tables."""

from __future__ import annotations

import time
from pathlib import Path

import click

from .app import Context, cli, emit_json, json_option, pass_ctx


@cli.command()
@click.option("--store", "demo_store", metavar="DIR", default=None, help="Where to build the demo store [default: the global --store, else ./tstore-demo].")
@json_option
@pass_ctx
def demo(ctx: Context, demo_store: str, as_json: bool) -> None:
    """Build a store from our demo set, embed it, print CP, separation and detection, run a query.

    Runs on the embedded defaults (SQLite, embedded Chroma, all-MiniLM-L6-v2); running it
    again re-imports and re-encodes nothing.
    """
    from ..demo import DEMO_QUERY, build_demo_store
    from .metrics_cmds import _print_run, _progress
    from .query_cmds import _print_result

    started = time.perf_counter()
    say = (lambda m: click.echo(m, err=True))
    with _progress() as progress:
        build = build_demo_store(demo_store or ctx.store_arg or "tstore-demo", progress=progress, say=say)
        store = build.store
        say("metrics: baseline, CP@10 per harm type, separation per pair type, contrast boundary, kNN detection")
        runs = store.metrics.compute("all", k=10, level="harm_type", taxonomy="do-not-answer", progress=progress)
        calibration = store.search.calibrate()
        (result,) = store.search.query([DEMO_QUERY], k=10, level="harm_type")
    seconds = time.perf_counter() - started
    if as_json:
        emit_json({
            "store": str(store.dir),
            "imports": [s.to_dict() for s in build.imports],
            "embed": build.embed.to_dict(),
            "metrics": [r.to_dict() for r in runs],
            "calibration": calibration.to_dict(),
            "query": result.to_dict(),
            "seconds": round(seconds, 2),
        })
        return
    for r in runs:
        _print_run(r)
        click.echo()
    click.echo(f"calibrated unsafe threshold {calibration.threshold:.3f} (leave-one-out: AUROC {calibration.auroc:.3f}, "
               f"precision {calibration.precision:.3f}, recall {calibration.recall:.3f}, FPR {calibration.fpr:.3f})")
    click.echo()
    click.echo(f"sample query: {DEMO_QUERY}")
    _print_result(result, single=True, show=5)
    click.echo()
    click.echo(f"demo finished in {seconds:.0f}s; explore it with `tstore --store {store.dir} tui`")


@cli.group()
def reproduce() -> None:
    """Reproduce a paper's tables from public data."""


@reproduce.command("safe-embed")
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False, exists=True), help="Folder holding xstest_aug.csv and do_not_answer.csv.")
@click.option("--encoder", "-e", "encoders", multiple=True, help="Encoder (repeatable) [default: every registered encoder].")
@click.option("--out", "out_dir", default="safe-embed-report", show_default=True, type=click.Path(file_okay=False), help="Where to write the report.")
@json_option
@pass_ctx
def safe_embed(ctx: Context, data_dir: str, encoders: tuple[str, ...], out_dir: str, as_json: bool) -> None:
    """Import the Safe-Embed data, embed with each encoder, and write a report (Markdown, JSON, PNG charts)
    beside the paper's published SBERT-all row. Running it twice re-encodes nothing."""
    from ..reproduce import reproduce_safe_embed
    from ..store import init_store
    from .metrics_cmds import _progress

    # The store is created if it does not exist yet: one command from nothing to the report.
    store = init_store(ctx.store_arg, db_url=ctx.db_url, chroma_url=ctx.chroma_url)
    store.chroma_token = ctx.chroma_token
    with _progress() as progress:
        report = reproduce_safe_embed(
            store, Path(data_dir), list(encoders) or None, Path(out_dir), progress=progress,
            say=lambda m: click.echo(m, err=True),
        )
    if as_json:
        emit_json(report.summary())
        return
    click.echo(report.markdown_path.read_text(encoding="utf-8"))
    click.echo(f"report written to {report.out_dir}: " + ", ".join(p.name for p in report.files))
