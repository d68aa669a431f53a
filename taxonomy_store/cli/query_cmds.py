"""`tstore query` and `tstore calibrate`: thin clients of `store.guard`."""

from __future__ import annotations

import codecs
import json
import sys
from typing import IO, Any, Iterator

import click

from taxonomy_store.errors import EmptyPrompt, InputFileError
from taxonomy_store.vocabulary import DEFAULT_LEVEL, DO_NOT_ANSWER_LEVELS, LABELS
from taxonomy_store.cli.app import Context, cli, pass_ctx
from taxonomy_store.cli.options import InputFile, encoder_option, exact_option, json_option, scorer_option
from taxonomy_store.cli.render import calibration_figures, echo_untrusted, emit_json, neighbour_line, print_query_result, untrusted

LEVELS = (DEFAULT_LEVEL,) + tuple(lv for lv in DO_NOT_ANSWER_LEVELS if lv != DEFAULT_LEVEL)
# Prompts read from a file are encoded in windows this large: the encoder sorts each window by
# length, so its batches pad little; results still come out in input order, window by window.
QUERY_WINDOW = 4096


def _decoded_lines(stream: IO[bytes], name: str) -> Iterator[tuple[int, str]]:
    """(line number, text) of a UTF-8 byte stream; invalid UTF-8 names the line and the byte offset."""
    offset = 0
    for lineno, raw in enumerate(stream, start=1):
        start = 3 if lineno == 1 and raw.startswith(codecs.BOM_UTF8) else 0
        try:
            line = raw[start:].decode("utf-8")
        except UnicodeDecodeError as exc:
            at = offset + start + exc.start
            raise InputFileError(
                name, f"not valid UTF-8: byte 0x{raw[start + exc.start]:02x} at byte offset {at} (line {lineno})",
                hint="save the file as UTF-8 (for example: iconv -f latin1 -t utf-8 FILE > FILE.utf8)",
            ) from None
        offset += len(raw)
        yield lineno, line.rstrip("\r\n")


def _prompt_from_line(name: str, lineno: int, line: str) -> tuple[Any, str]:
    """A plain-text line is the prompt; a JSON line gives "text" (and optionally "id")."""
    if not line.lstrip().startswith("{"):
        return lineno, line
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputFileError(name, f"invalid JSON: {exc.msg}", row=lineno, hint="one JSON object per line, or plain text") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        raise InputFileError(name, 'a JSON line needs a "text" string', row=lineno, column="text")
    if not obj["text"].strip():
        raise EmptyPrompt(f"{name}, row {lineno}: empty prompt", "give some text to query")
    return obj.get("id", lineno), obj["text"]


def _read_inputs(text: str | None, file: str | None) -> Iterator[tuple[Any, str]]:
    """(id, text) pairs: one argument, or one prompt per line of a file / stdin (JSONL with id and text too)."""
    if text is not None and text != "-":
        yield None, text
        return
    if file in (None, "-"):
        stream = getattr(sys.stdin, "buffer", None)
        lines = _decoded_lines(stream, "<stdin>") if stream is not None else enumerate(sys.stdin, start=1)
        for lineno, line in lines:
            if line.strip():
                yield _prompt_from_line("<stdin>", lineno, line.rstrip("\r\n"))
        return
    try:
        stream = open(file, "rb")
    except OSError as exc:
        raise InputFileError(file, f"cannot read: {exc.strerror or exc}", hint="check that the file is readable") from exc
    with stream:
        for lineno, line in _decoded_lines(stream, file):
            if line.strip():
                yield _prompt_from_line(file, lineno, line)


def _batches(items: Iterator[tuple[Any, str]], size: int):
    chunk: list[tuple[Any, str]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@cli.command("query")
@click.argument("text", required=False)
@click.option("--file", "file", type=InputFile(allow_dash=True), help="Read prompts from FILE, one per line (or JSONL with \"id\" and \"text\"); - for stdin.")
@encoder_option()
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbours per prompt.")
@click.option("--level", type=click.Choice(LEVELS), default=DEFAULT_LEVEL, show_default=True, help="Taxonomy level of the category vote.")
@click.option("--taxonomy", default=None, help="Taxonomy whose categories vote [default: do-not-answer, when loaded].")
@click.option("--dataset", multiple=True, help="Only neighbours from this dataset (repeatable).")
@click.option("--label", type=click.Choice(LABELS), multiple=True, help="Only neighbours with this label (repeatable).")
@click.option("--category", multiple=True, help="Only neighbours in this category or under it (a node code; repeatable).")
@exact_option
@json_option
@pass_ctx
def query_cmd(ctx: Context, text, file, encoder, k, level, taxonomy, dataset, label, category, exact, as_json) -> None:
    """Nearest stored prompts and unsafe categories for TEXT, and a calibrated verdict.

    TEXT may be - (or use --file) to read one prompt per line; with --json each result is one
    JSON line. The verdict is unsafe, safe or uncertain (near the threshold, nothing like it
    stored, or not calibrated), and names the calibrated scorer that decided. Filters narrow the
    neighbour list, never the verdict.
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
    if exact:
        ctx.store.exact_neighbours()
    search = ctx.store.guard
    warned: set[str] = set()
    for chunk in _batches(_read_inputs(text, file), 1 if single else QUERY_WINDOW):
        results = search.query(
            [t for _, t in chunk], ids=[i for i, _ in chunk], encoder=encoder, k=k, level=level, taxonomy=taxonomy,
            dataset=list(dataset) or None, label=list(label) or None, category=list(category) or None,
        )
        for r in results:
            for w in r.warnings:
                if w not in warned:
                    warned.add(w)
                    echo_untrusted(f"warning: {w}", err=True)
            if as_json:
                emit_json(r.to_dict())
            else:
                print_query_result(r, single=single, show=k)
                if not single:
                    click.echo("")


@cli.command("calibrate")
@encoder_option("Encoder to calibrate [env TSTORE_ENCODER; default minilm].")
@scorer_option
@click.option("--target-fpr", type=click.FloatRange(0.0, 1.0), default=None, help="Highest recall whose false-positive rate stays within this.")
@click.option("--max-f1", "max_f1", is_flag=True, default=False, help="Threshold with the best F1 [default: best recall minus false-positive rate].")
@click.option("-k", "k", type=click.IntRange(min=1), default=10, show_default=True, help="Neighbours that vote.")
@click.option("--margin", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.05, show_default=True, help="The 'uncertain' band either side of the threshold, as a share of the deciding scorer's score spread "
              "(5th to 95th percentile of its out-of-fold scores), so it means the same for every scorer.")
@exact_option
@json_option
@pass_ctx
def calibrate_cmd(ctx: Context, encoder, scorer, target_fpr, max_f1, k, margin, exact, as_json) -> None:
    """Choose the encoder's scorer and unsafe threshold on grouped cross-validation.

    Folds keep pairs together and spread every dataset; the out-of-fold figures predict unseen
    data, the in-sample (leave-one-out) figure beside them does not. For an encoder tuned on this
    store (`tstore adapt`) they are held out only on the prompts it never trained on; with too few
    of those they are printed as not held out, with a warning.
    """
    if target_fpr is not None and max_f1:
        raise click.UsageError("give --target-fpr or --max-f1, not both")
    if exact:
        ctx.store.exact_neighbours()
    cal = ctx.store.guard.calibrate(encoder, target_fpr=target_fpr, max_f1=max_f1, k=k, margin=margin, scorer=scorer)
    for w in cal.warnings:
        echo_untrusted(f"warning: {w}", err=True)
    if as_json:
        emit_json(cal.to_dict())
        return
    goal = f"target FPR {cal.target_fpr:g}" if cal.target_fpr is not None else "best F1" if cal.objective == "max_f1" else "best recall - FPR"
    click.echo(
        f"calibrated {untrusted(cal.encoder)} ({goal}, k={cal.k}, {len(cal.folds)}-fold grouped cross-validation on "
        f"{cal.n_unsafe} unsafe + {cal.n_safe} safe prompts, data revision {cal.data_revision})"
    )
    on = " on trained-on prompts, NOT held out" if cal.contaminated else " on never-trained prompts" if cal.trained_on else ""
    how = "forced" if cal.forced else f"best grouped-CV AUROC{on}"
    others = "  ".join(f"{n} {v['cv_auroc']:.4f}" for n, v in cal.scorers.items())
    click.echo(f"scorer {cal.scorer} ({how}; grouped-CV AUROC{on}: {others})")
    click.echo(f"threshold {cal.threshold:.4f} (uncertain within ±{cal.uncertain_within:.3g}); "
               f"nothing like it is stored below normalised similarity {cal.ood_similarity:.3f}")
    for line in calibration_figures(cal):
        click.echo(line)
    if (how_found := neighbour_line(cal.neighbour_search)) is not None:
        click.echo(how_found)

