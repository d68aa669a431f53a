"""`tstore crosswalk SOURCE TARGET`, `tstore crosswalk list|export|import|undo`, `tstore coverage`, `tstore overlap`.

Thin clients of `store.crosswalks`, `store.coverage` and `store.overlap`.
"""

from __future__ import annotations

import click

from taxonomy_store.cli.app import Context, Group, cli, pass_ctx
from taxonomy_store.cli.options import InputFile, OutputFile, encoder_option, json_option
from taxonomy_store.cli.render import emit_json, fmt_value, stdout_console, table, untrusted

STATUSES = ("proposed", "accepted", "rejected")


class _DefaultShowGroup(Group):
    """`tstore crosswalk SOURCE TARGET ...` runs `crosswalk show`; `list`, `export`, ... stay subcommands."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


@cli.group(cls=_DefaultShowGroup, subcommand_metavar="SOURCE TARGET [OPTIONS] | COMMAND [ARGS]...")
def crosswalk() -> None:
    """Relate two taxonomies: `tstore crosswalk SOURCE TARGET` proposes, --accept/--reject decide; list, export, import, undo."""


@crosswalk.command("show")
@click.argument("source")
@click.argument("target")
@click.option("--level", default=None, metavar="LEVEL", help="TARGET level to map onto (name or depth) [default: harm_type, else its deepest].")
@click.option("--source-level", default=None, metavar="LEVEL", help="SOURCE level whose categories are mapped [default as --level].")
@encoder_option("Encoder whose neighbours to use [env TSTORE_ENCODER; default minilm].")
@click.option("--k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="TARGET-labeled neighbours per prompt.")
@click.option("--accept", "accept", multiple=True, metavar="SRC[=TGT]", help="Accept the proposal for source category SRC (or SRC -> TGT). Repeatable.")
@click.option("--reject", "reject", multiple=True, metavar="SRC[=TGT]", help="Reject the proposal for SRC (or SRC -> TGT). Repeatable.")
@click.option("--save", is_flag=True, help="Store every proposal as a `proposed` row (audited) for later review.")
@click.option("--note", default=None, help="A note stored with the decided rows.")
@json_option
@pass_ctx
def crosswalk_show(ctx: Context, source, target, level, source_level, encoder, k, accept, reject, save, note, as_json) -> None:
    """Propose TARGET categories for each SOURCE category from its prompts' neighbours."""
    store = ctx.store
    report = store.crosswalks.propose(source, target, level=level, source_level=source_level, encoder=encoder, k=k)
    rows = store.crosswalks.decide(report, accept=list(accept), reject=list(reject), save=save, note=note)
    if rows:
        report = store.crosswalks.propose(source, target, level=level, source_level=source_level, encoder=encoder, k=k)
    if as_json:
        d = report.to_dict()
        d["written"] = [r.to_dict() for r in rows]
        emit_json(d)
        return
    _print_report(report)
    for r in rows:
        click.echo(f"{r.status}: {untrusted(r.source)} -> {untrusted(r.target)} (weight {r.weight:.3f})", err=True)
    if rows and rows[0].batch:
        click.echo(f"batch {rows[0].batch} (undo: `tstore crosswalk undo`)", err=True)


def _print_report(report) -> None:
    t = table(
        f"crosswalk {report.source} -> {report.target} ({report.target_level}; {report.encoder}, k={report.k}, "
        f"radius {report.radius:.3f} from {report.radius_from})",
        ["source", "prompts", "coverage", "reading", "top shares (share / mean sim)", "stored"],
        right=("prompts", "coverage"),
    )
    for p in report.proposals:
        shares = ", ".join(f"{s.code} {s.share:.2f}/{fmt_value(s.mean_similarity, 2)}" for s in p.shares[:3])
        reading = f"[bold red]{p.label}[/]" if p.reading == "no counterpart" else p.label
        stored = ", ".join(f"{t}:{s}" for t, s in sorted(p.status.items())) or "–"
        t.add_row(untrusted(p.source), str(p.prompts), f"{p.coverage:.0%}", reading, untrusted(shares), untrusted(stored))
    stdout_console().print(t)
    for w in report.warnings:
        click.echo(f"warning: {untrusted(w)}", err=True)


@crosswalk.command("list")
@click.option("--source", default=None, metavar="TAXONOMY", help="Only rows from this taxonomy.")
@click.option("--target", default=None, metavar="TAXONOMY", help="Only rows onto this taxonomy.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only rows with this status.")
@json_option
@pass_ctx
def crosswalk_list(ctx: Context, source, target, status, as_json) -> None:
    """List the stored crosswalk rows (JSON lines with --json)."""
    for r in ctx.store.crosswalks.list(source=source, target=target, status=status):
        if as_json:
            emit_json(r.to_dict())
        else:
            click.echo(f"{r.id}\t{r.status}\t{untrusted(r.source_taxonomy)}:{untrusted(r.source)}\t"
                       f"{untrusted(r.target_taxonomy)}:{untrusted(r.target)}\t{r.weight:.3f}\t{untrusted(r.note or '')}")


@crosswalk.command("export")
@click.option("-o", "--output", "output", type=OutputFile(), default="-", show_default=True, help="File to write (- for stdout).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default=None, help="[default: from the file name, else csv]")
@click.option("--source", default=None, metavar="TAXONOMY", help="Only rows from this taxonomy.")
@click.option("--target", default=None, metavar="TAXONOMY", help="Only rows onto this taxonomy.")
@click.option("--status", type=click.Choice(STATUSES), default=None, help="Only rows with this status.")
@pass_ctx
def crosswalk_export(ctx: Context, output, fmt, source, target, status) -> None:
    """Write crosswalk rows as CSV or JSON (a reviewed crosswalk a team keeps in git)."""
    if output == "-":
        click.echo(ctx.store.crosswalks.dumps(fmt or "csv", source=source, target=target, status=status), nl=False)
        return
    n = ctx.store.crosswalks.export(output, fmt=fmt, source=source, target=target, status=status)
    click.echo(f"wrote {n} crosswalk rows to {untrusted(output)}", err=True)


@crosswalk.command("import")
@click.argument("file", type=InputFile())
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default=None, help="[default: from the file name, else csv]")
@json_option
@pass_ctx
def crosswalk_import(ctx: Context, file, fmt, as_json) -> None:
    """Read crosswalk rows from CSV / JSON (columns source_taxonomy, source, target_taxonomy, target, weight, status, note)."""
    rows = ctx.store.crosswalks.import_file(file, fmt=fmt)
    if as_json:
        emit_json({"rows": [r.to_dict() for r in rows], "batch": rows[0].batch if rows else None})
        return
    click.echo(f"imported {len(rows)} crosswalk rows" + (f" (batch {rows[0].batch})" if rows and rows[0].batch else " (no change)"))


@crosswalk.command("undo")
@click.option("--batch", "batch", default=None, metavar="ID", help="The batch to undo [default: the newest crosswalk change].")
@json_option
@pass_ctx
def crosswalk_undo(ctx: Context, batch, as_json) -> None:
    """Undo a crosswalk change (accept, reject, save, import)."""
    r = ctx.store.crosswalks.undo(batch)
    emit_json(r) if as_json else click.echo(f"undid batch {r['undone_batch']} ({r['changes']} rows)")


@cli.command("coverage")
@click.argument("file", type=InputFile(), required=False)
@click.option("--dataset", default=None, metavar="NAME", help="A stored dataset instead of a FILE (its own prompts never cover it).")
@click.option("--taxonomy", default=None, metavar="NAME", help="Group by this taxonomy's categories (stored datasets).")
@click.option("--level", default=None, metavar="LEVEL", help="Category level to group by (stored datasets).")
@click.option("--map", "maps", multiple=True, metavar="TARGET=COLUMN", help="Generic files: map text, label, category, id to columns.")
@click.option("--label", default=None, help="Generic files: the label of every row.")
@click.option("--format", "fmt", default=None, help="The file's format [default: detected].")
@encoder_option("Encoder whose neighbours to use [env TSTORE_ENCODER; default minilm].")
@click.option("--png", "png", type=OutputFile(), default=None, metavar="PATH", help="Also write a bar chart of the shares per category.")
@json_option
@pass_ctx
def coverage(ctx: Context, file, dataset, taxonomy, level, maps, label, fmt, encoder, png, as_json) -> None:
    """Which prompts and categories of a file or dataset have no labeled stored prompt inside the calibrated radius, and which the guard would call safe."""
    from taxonomy_store.cli.import_cmds import parse_column_map
    from taxonomy_store.errors import InvalidValue

    if (file is None) == (dataset is None):
        raise InvalidValue("give a FILE or --dataset NAME (one of them)", "e.g. `tstore coverage --dataset advbench`")
    cov = ctx.store.coverage
    if dataset:
        report = cov.of_dataset(dataset, taxonomy=taxonomy, level=level, encoder=encoder)
    else:
        report = cov.of_file(file, mapping=parse_column_map(maps) or None, label=label, fmt=fmt, encoder=encoder)
    if png:
        from taxonomy_store.crosswalks.coverage import bar_chart

        bar_chart(report, png)
    if as_json:
        emit_json(report.to_dict())
        return
    _print_coverage(report)
    if png:
        click.echo(f"wrote {untrusted(png)}", err=True)


def _print_coverage(report) -> None:
    t = table(f"coverage of {report.of} ({report.encoder}, radius {report.radius:.3f} from {report.radius_from})",
              ["category", "prompts", "covered", "near unsafe", "called unsafe", "uncertain", "called safe", "median nearest"],
              right=("prompts", "covered", "near unsafe", "called unsafe", "uncertain", "called safe", "median nearest"))
    for c in report.categories + [report.overall]:
        v = c.verdicts
        pct = (lambda x: "–" if x is None else f"{x:.0%}")
        covered = f"[bold red]{c.covered:.0%}[/]" if c.covered < 0.5 else f"{c.covered:.0%}"
        t.add_row(untrusted(c.category), str(c.prompts), covered, f"{c.near_unsafe:.0%}", pct(v.get("unsafe")),
                  pct(v.get("uncertain")), pct(v.get("safe")), f"{c.median_nearest:.3f}")
    stdout_console().print(t)
    for w in report.warnings:
        click.echo(f"warning: {untrusted(w)}", err=True)


@cli.command("overlap")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.95, show_default=True,
              help="Cosine similarity at which two prompts are near-duplicates.")
@click.option("--dataset", "datasets", multiple=True, metavar="NAME", help="Only these datasets (repeat) [default: all].")
@encoder_option("Encoder whose vectors decide near-duplicates [env TSTORE_ENCODER; default minilm].")
@click.option("--exact-only", is_flag=True, help="Only exact (normalised text) duplicates: no vectors needed.")
@click.option("--csv", "csv_path", type=OutputFile(), default=None, metavar="PATH", help="Write the groups as CSV (one row per prompt).")
@click.option("--groups", "show_groups", type=click.IntRange(min=0), default=10, show_default=True, help="Groups to print.")
@json_option
@pass_ctx
def overlap(ctx: Context, threshold, datasets, encoder, exact_only, csv_path, show_groups, as_json) -> None:
    """Exact and near-duplicate prompts within and across datasets: counts per dataset pair and the groups."""
    report = ctx.store.overlap.report(datasets=list(datasets), threshold=threshold, encoder=encoder, near=not exact_only)
    if csv_path:
        _write_groups_csv(report, csv_path)
    if as_json:
        emit_json(report.to_dict())
        return
    t = table(f"overlap (exact: same normalised text; near: cosine >= {threshold} under {report.encoder or '-'})",
              ["dataset A", "dataset B", "exact groups", "near groups"], right=("exact groups", "near groups"))
    for p in report.pairs:
        if p["exact"] or p["near"] or p["a"] != p["b"]:
            t.add_row(untrusted(p["a"]), untrusted(p["b"]), str(p["exact"]), str(p["near"]))
    stdout_console().print(t)
    for g in report.groups[:show_groups]:
        click.echo(f"{g.kind}\t{','.join(map(str, g.prompt_ids))}\t{untrusted(','.join(g.datasets))}\t{untrusted(g.texts[0][:100])}")


def _write_groups_csv(report, path: str) -> None:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["group", "kind", "prompt_id", "datasets", "text"])
        for n, g in enumerate(report.groups, start=1):
            for pid, text in zip(g.prompt_ids, g.texts):
                w.writerow([n, g.kind, pid, ";".join(g.datasets), text])
