"""`tstore query` and `tstore calibrate`: thin clients of `store.search`."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterator

import click

from ..errors import EmptyPrompt, InputFileError
from ..text import inert
from .app import Context, cli, emit_json, json_option, pass_ctx

LEVELS = ("harm_type", "risk_area", "specific_harm")
BATCH = 64


def _read_inputs(text: str | None, file: str | None) -> Iterator[tuple[Any, str]]:
    """(id, text) pairs: one argument, or one prompt per line of a file / stdin (JSONL with id and text too)."""
    if text is not None and text != "-":
        yield None, text
        return
    name = "<stdin>" if (file in (None, "-")) else file
    try:
        stream = sys.stdin if name == "<stdin>" else open(file, encoding="utf-8-sig")
    except OSError as exc:
        raise InputFileError(file, exc.strerror or str(exc)) from exc
    with stream if name != "<stdin>" else _nullcontext(stream):
        for lineno, line in enumerate(stream, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if line.lstrip().startswith("{"):
                try:
                    obj = json.loads(line)
                except ValueError as exc:
                    raise InputFileError(name, f"invalid JSON: {exc.msg}", row=lineno, hint="one JSON object per line, or plain text") from exc
                if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                    raise InputFileError(name, 'a JSON line needs a "text" string', row=lineno, column="text")
                if not obj["text"].strip():
                    raise EmptyPrompt(f"{name}, row {lineno}: empty prompt", "give some text to query")
                yield obj.get("id", lineno), obj["text"]
            else:
                yield lineno, line


class _nullcontext:
    def __init__(self, obj):
        self.obj = obj

    def __enter__(self):
        return self.obj

    def __exit__(self, *exc):
        return False


def _chunks(items: Iterator[tuple[Any, str]], size: int):
    chunk: list[tuple[Any, str]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _print_result(r, *, single: bool, show: int) -> None:
    head = "" if single else f"[{inert(str(r.id))}] "
    score = "n/a" if r.unsafe_score is None else f"{r.unsafe_score:.3f}"
    click.echo(f"{head}verdict: {r.verdict.upper()}  (unsafe score {score}; {r.verdict_reason})")
    if r.categories:
        click.echo(f"top {r.level} categories ({r.taxonomy}; share of the neighbours' similarity):")
        for v in r.categories[:3]:
            up = " < ".join(inert(c) for c in reversed(v.path[:-1]))
            click.echo(f"  {v.score:6.3f}  {inert(v.code)}  {inert(v.short_name or v.name)}" + (f"  [{up}]" if up else "") + f"  ({v.count} of {len(r.neighbours)})")
        for lvl, votes in r.rollup.items():
            if votes:
                top = votes[0]
                click.echo(f"  {lvl}: {inert(top.code)} {top.score:.3f}")
    else:
        click.echo(f"no neighbour has a {r.level} category in {r.taxonomy}")
    click.echo(f"nearest {len(r.neighbours)} stored prompts:")
    for n in r.neighbours[:show]:
        cat = "/".join(inert(c) for c in n.category_path) or "-"
        text = inert(n.text)
        if len(text) > 100:
            text = text[:99] + "…"
        click.echo(f"  {n.similarity:6.3f}  {n.label:<9} {inert(n.dataset or '-'):<16} {cat}  {text}")


@cli.command("query")
@click.argument("text", required=False)
@click.option("--file", "file", type=click.Path(dir_okay=False, allow_dash=True), help="Read prompts from FILE, one per line (or JSONL with \"id\" and \"text\"); - for stdin.")
@click.option("-e", "--encoder", envvar="TSTORE_ENCODER", default=None, help="Encoder to use [env TSTORE_ENCODER; default minilm].")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbours per prompt.")
@click.option("--level", type=click.Choice(LEVELS), default="harm_type", show_default=True, help="Taxonomy level of the category vote.")
@click.option("--taxonomy", default=None, help="Taxonomy whose categories vote [default: do-not-answer, when loaded].")
@click.option("--dataset", multiple=True, help="Only neighbours from this dataset (repeatable).")
@click.option("--label", type=click.Choice(["safe", "unsafe", "unlabeled"]), multiple=True, help="Only neighbours with this label (repeatable).")
@json_option
@pass_ctx
def query_cmd(ctx: Context, text, file, encoder, k, level, taxonomy, dataset, label, as_json) -> None:
    """Nearest stored prompts and unsafe categories for TEXT, and a calibrated verdict.

    TEXT may be - (or use --file) to read one prompt per line; with --json each result is one
    JSON line. The verdict is unsafe, safe or uncertain (near the threshold, or not calibrated).
    """
    if text is not None and file is not None:
        raise click.UsageError("give TEXT or --file, not both")
    if text is None and file is None:
        if sys.stdin.isatty():
            raise click.UsageError("give TEXT, --file FILE, or - to read prompts from stdin")
        text = "-"
    if text is not None and text != "-" and not text.strip():
        raise EmptyPrompt("empty prompt", "give some text to query")
    single = text is not None and text != "-"
    search = ctx.store.search
    warned: set[str] = set()
    for chunk in _chunks(_read_inputs(text, file), 1 if single else BATCH):
        results = search.query(
            [t for _, t in chunk], ids=[i for i, _ in chunk], encoder=encoder, k=k, level=level, taxonomy=taxonomy,
            dataset=list(dataset) or None, label=list(label) or None,
        )
        for r in results:
            for w in r.warnings:
                if w not in warned:
                    warned.add(w)
                    click.echo(f"warning: {w}", err=True)
            if as_json:
                emit_json(r.to_dict())
            else:
                _print_result(r, single=single, show=k)
                if not single:
                    click.echo("")


@cli.command("calibrate")
@click.option("-e", "--encoder", envvar="TSTORE_ENCODER", default=None, help="Encoder to calibrate [env TSTORE_ENCODER; default minilm].")
@click.option("--target-fpr", type=click.FloatRange(0.0, 1.0), default=None, help="Highest recall whose false-positive rate stays within this.")
@click.option("--max-f1", "max_f1", is_flag=True, default=False, help="Threshold with the best F1 (the default).")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbours that vote.")
@click.option("--margin", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.05, show_default=True, help="Scores this close to the threshold are 'uncertain'.")
@json_option
@pass_ctx
def calibrate_cmd(ctx: Context, encoder, target_fpr, max_f1, k, margin, as_json) -> None:
    """Choose the encoder's unsafe threshold from the store's labeled prompts (leave-one-out)."""
    if target_fpr is not None and max_f1:
        raise click.UsageError("give --target-fpr or --max-f1, not both")
    cal = ctx.store.search.calibrate(encoder, target_fpr=target_fpr, max_f1=target_fpr is None, k=k, margin=margin)
    if as_json:
        emit_json(cal.to_dict())
        return
    goal = f"target FPR {cal.target_fpr:g}" if cal.objective == "target_fpr" else "best F1"
    click.echo(
        f"calibrated {cal.encoder} ({goal}, k={cal.k}, leave-one-out on {cal.n_unsafe} unsafe + {cal.n_safe} safe prompts, "
        f"data revision {cal.data_revision})"
    )
    click.echo(f"threshold {cal.threshold:.4f} (uncertain within ±{cal.margin:g})")
    click.echo(f"AUROC {cal.auroc:.4f}  precision {cal.precision:.4f}  recall {cal.recall:.4f}  FPR {cal.fpr:.4f}  F1 {cal.f1:.4f}")
