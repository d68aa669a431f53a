"""How the CLI shows things: JSON lines, consoles, progress bars, numbers, untrusted text.

Every command module prints through here, so a prompt, a dataset name or a file name from
outside reaches the terminal only after `untrusted()` (or `markup()` inside a rich table) has
made its control characters visible. rich is imported inside the functions: `tstore --help`
stays light.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import click

from taxonomy_store.text import inert

Progress = Callable[[str, int, int], None]


# -- untrusted text --------------------------------------------------------------------------
def untrusted(value: Any) -> str:
    """Text from outside (prompts, dataset, file and category names, notes) made inert for a terminal."""
    return inert(str(value))


def markup(value: Any) -> str:
    """Untrusted text for a rich table or tree: inert, and its square brackets not read as markup."""
    from rich.markup import escape

    return escape(untrusted(value))


def echo_untrusted(line: Any, *, err: bool = False) -> None:
    """Print one line that carries untrusted text (made inert first)."""
    click.echo(untrusted(line), err=err)


# -- machine output --------------------------------------------------------------------------
def emit_json(obj: Any, *, err: bool = False) -> None:
    """One JSON object on one line (a JSON lines stream when called per item)."""
    # JSON escapes C0 controls (ESC among them) by itself; on a terminal escape everything
    # non-ASCII too, so C1 controls and bidi overrides in prompt text stay inert. Side output
    # on stderr (beside data on stdout) is always ASCII.
    click.echo(json.dumps(obj, ensure_ascii=err or sys.stdout.isatty(), default=str), err=err)


# -- consoles and numbers --------------------------------------------------------------------
def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def stdout_console():
    """Rich console for data on stdout; when piped, wide enough that lines are not wrapped."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def fmt_value(v: Any, digits: int = 3) -> str:
    """A metric value for a table: floats rounded, a missing value as a dash."""
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(title: str, columns: list[str] | tuple[str, ...], *, right: tuple[str, ...] = ()):
    """A left-titled rich table; `right` names the columns aligned right (numbers)."""
    from rich.table import Table

    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="right" if c in right else "left")
    return t


# -- progress --------------------------------------------------------------------------------
@contextmanager
def progress_bar(verb: str = "", *, labels: dict[str, str] | None = None, transient: bool = True,
                 time_remaining: bool = False) -> Iterator[Progress]:
    """A progress bar on stderr with one task per stage; yields the `progress(stage, done, total)` callback.

    `verb` prefixes every task ("embedding minilm"); `labels` renames stages for people.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = [TextColumn(f"{verb} [bold]{{task.description}}" if verb else "[bold]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn()]
    if time_remaining:
        columns.append(TimeRemainingColumn())
    tasks: dict[str, TaskID] = {}
    with Bar(*columns, console=stderr_console(), transient=transient) as bar:

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task((labels or {}).get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield progress


@contextmanager
def byte_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A bytes-done bar on stderr (unpacking a model); yields `progress(done, total)`."""
    from rich.progress import BarColumn, DownloadColumn, Progress as Bar, TextColumn, TimeRemainingColumn

    with Bar(TextColumn(label), BarColumn(), DownloadColumn(), TimeRemainingColumn(), console=stderr_console(),
             transient=True) as bar:
        task = bar.add_task(label, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield progress


# -- query results ---------------------------------------------------------------------------
def print_query_result(r, *, single: bool, show: int) -> None:
    """One query's verdict, top categories and nearest stored prompts, as plain lines."""
    head = "" if single else f"[{untrusted(r.id)}] "
    score = "n/a" if r.unsafe_score is None else f"{r.unsafe_score:.3f}"
    click.echo(f"{head}verdict: {r.verdict.upper()}  (unsafe score {score}; {untrusted(r.verdict_reason)})")
    if r.categories:
        click.echo(f"top {r.level} categories ({untrusted(r.taxonomy)}; share of the neighbours' similarity):")
        for v in r.categories[:3]:
            up = " < ".join(untrusted(c) for c in reversed(v.path[:-1]))
            click.echo(f"  {v.score:6.3f}  {untrusted(v.code)}  {untrusted(v.short_name or v.name)}"
                       + (f"  [{up}]" if up else "") + f"  ({v.count} of {len(r.neighbours)})")
        for lvl, votes in r.rollup.items():
            if votes:
                top = votes[0]
                click.echo(f"  {lvl}: {untrusted(top.code)} {top.score:.3f}")
    elif r.verdict == "safe" or not r.votes and r.verdict == "uncertain":
        click.echo("no harm category: " + ("the verdict is safe" if r.verdict == "safe" else "no harm category voted"))
    else:
        click.echo(f"no neighbour has a {r.level} category in {untrusted(r.taxonomy)}")
    for note in getattr(r, "via_crosswalk", []):
        click.echo(f"  ({untrusted(note)})")
    for name, votes in r.votes.items():
        if name != r.taxonomy and votes:
            click.echo(f"  also {untrusted(name)}: {untrusted(votes[0].code)} {votes[0].score:.3f}")
    click.echo(f"nearest {len(r.neighbours)} stored prompts:")
    for n in r.neighbours[:show]:
        cat = "/".join(untrusted(c) for c in n.category_path) or "-"
        text = untrusted(n.text)
        if len(text) > 100:
            text = text[:99] + "…"
        click.echo(f"  {n.similarity:6.3f}  {n.label:<9} {untrusted(n.dataset or '-'):<16} {cat}  {text}")


def neighbour_line(info: dict | None) -> str | None:
    """How a figure's neighbours were found, for people: None when exact (the default), else the
    approximate index's kind, efSearch and measured recall (the JSON's `neighbour_search`)."""
    if not info or info.get("exact", True):
        return None
    index = info.get("index") or {}
    recall = index.get("recall")
    measured = f"recall@{index.get('recall_k', 10)} {recall:.4f} on {index.get('recall_queries', '?')} sampled prompts" \
        if isinstance(recall, (int, float)) else "recall not measured"
    return (f"neighbours: approximate ({index.get('library', '?')} {index.get('index', '?')}, efSearch "
            f"{index.get('efSearch', '?')}, {measured}); --exact forces exact")


def calibration_figures(cal) -> list[str]:
    """The AUROC and out-of-fold lines, named for what they are computed on: a tuned encoder's figures
    are held out only on prompts it never trained on; figures over trained-on prompts say so."""
    loo = f"in-sample (leave-one-out) {cal.in_sample_auroc:.4f}"
    at = f"precision {cal.precision:.4f}  recall {cal.recall:.4f}  FPR {cal.fpr:.4f}  F1 {cal.f1:.4f}"
    if cal.contaminated:
        return [f"AUROC grouped-CV folds {cal.auroc:.4f} NOT held out: {untrusted(cal.encoder)} was trained on "
                f"{cal.trained_on} of these {cal.n_reference} prompts   {loo}",
                f"out of fold, trained-on prompts (not held out): {at}"]
    if cal.trained_on:
        return [f"AUROC held out on {cal.held_out_basis} {cal.auroc:.4f}   all folds, trained-on included "
                f"(not held out) {cal.all_folds_auroc:.4f}   {loo}",
                f"out of fold, never-trained prompts: {at}"]
    return [f"AUROC held-out folds {cal.auroc:.4f}   {loo}", f"out of fold: {at}"]
