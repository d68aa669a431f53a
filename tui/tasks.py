"""Store-wide tasks the command palette offers (the CLI's import, export, calibrate, evaluate):
each asks what it needs in a modal, runs in a worker, and says what it did in a toast. A failure
goes to the app's one error handler like any other worker's."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from taxonomy_store.text import inert

from taxonomy_store.tui.screens.modals import TextInputModal

if TYPE_CHECKING:
    from taxonomy_store.tui.host import StoreHost

EXPORT_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}


def _run(app: "StoreHost", what: str, job: Callable[[], str]) -> None:
    """The job in a thread worker (exit_on_error=False: a failure becomes the error modal); its line in a toast."""

    def work() -> None:
        line = job()
        app.call_from_thread(app.notify, inert(line), markup=False)

    app.notify(f"{what}…", markup=False)
    app.run_worker(work, thread=True, exclusive=True, group="app.task", exit_on_error=False)  # type: ignore[attr-defined]


def _ask(app: "StoreHost", title: str, value: str, then: Callable[[str], None]) -> None:
    def answered(text: str | None) -> None:
        if text and text.strip():
            then(text.strip())

    app.push_screen(TextInputModal(title, value), answered)


def import_file(app: "StoreHost") -> None:
    def go(path: str) -> None:
        def job() -> str:
            s = app.store.imports.import_file(Path(path).expanduser())
            return (f"imported {s.path}: {s.added} prompts added, {s.updated} updated, {s.unchanged} unchanged, "
                    f"{s.pairs_added} pairs added (dataset {s.dataset}); embed them on the Metrics screen (e)")
        _run(app, f"importing {path}", job)

    _ask(app, "Import a data file (CSV, TSV, JSONL, JSON, Parquet): path", "", go)


def export(app: "StoreHost", kind: str) -> None:
    def go(path: str) -> None:
        fmt = EXPORT_FORMATS.get(Path(path).suffix.lower(), "csv")

        def job() -> str:
            r = getattr(app.store.exports, f"export_{kind}")(Path(path).expanduser(), format=fmt)
            return f"exported {r.rows} {kind} to {path} ({fmt})"
        _run(app, f"exporting {kind} to {path}", job)

    _ask(app, f"Export {kind} to (.csv, .jsonl or .parquet)", f"tstore-{kind}.csv", go)


def calibration_line(encoder: str, cal: Any) -> str:
    """What `tstore calibrate` says, in one line: the deciding scorer, the threshold and its out-of-fold figures."""
    return (f"calibrated the guard under {encoder}: scorer {cal.scorer}, threshold {cal.threshold:.3f}; out of fold "
            f"precision {cal.precision:.3f}, recall {cal.recall:.3f}, FPR {cal.fpr:.3f}, F1 {cal.f1:.3f}; "
            f"grouped-CV AUROC {cal.auroc:.3f} ({cal.n_unsafe} unsafe, {cal.n_safe} safe)")


def evaluation_line(encoder: str, run: Any) -> str:
    """The primary figure, then each held-out dataset's: the split's AUROC, the recall of its unsafe
    prompts and the share of its safe ones flagged (what `tstore evaluate` prints per dataset)."""
    value = f" = {run.primary_value:.3f}" if run.primary_value is not None else ""
    how = "each labeled dataset held out in turn" if run.params.get("by_dataset") else \
        "held out: " + ", ".join(run.params.get("holdout") or [])
    parts = []
    for split in run.details.get("splits", []):
        auroc = [f"AUROC {split['auroc']:.3f}"] if split.get("auroc") is not None else []
        for name, fig in split["datasets"].items():
            figures = auroc + [f"{key} {fig[key]:.3f}" for key in ("recall", "flagged") if fig.get(key) is not None]
            parts.append(f"{name}: {', '.join(figures) or 'no figure'}")
    return f"evaluated the guard under {encoder}, {how}: {run.primary_name}{value}" + ("; " + "; ".join(parts) if parts else "")


def calibrate(app: "StoreHost") -> None:
    encoder = app.encoder

    def job() -> str:
        return calibration_line(str(encoder), app.store.guard.calibrate(encoder))
    _run(app, f"calibrating the guard under {encoder}", job)


def evaluate(app: "StoreHost") -> None:
    encoder = app.encoder

    def go(answer: str) -> None:
        names = [n.strip() for n in answer.split(",") if n.strip()]
        each = names == ["each"]

        def job() -> str:
            run = app.store.evaluation.evaluate(encoder=encoder, by_dataset=each, holdout=[] if each else names)
            return evaluation_line(str(encoder), run)
        _run(app, f"evaluating the guard under {encoder}, " + ("each dataset held out in turn" if each else f"held out: {answer}"), job)

    _ask(app, "Evaluate the guard: hold out which datasets (comma-separated; each: every labeled dataset in turn)", "each", go)


def palette_tasks(app: "StoreHost") -> list[tuple[str, str, Callable[[], None]]]:
    """(title, help, callback) for the command palette."""
    return [
        ("Import a data file…", "Add prompts and pairs from a file (tstore import)", lambda: import_file(app)),
        ("Export prompts…", "Write every live prompt to a file (tstore export prompts)", lambda: export(app, "prompts")),
        ("Export pairs…", "Write every pair to a file (tstore export pairs)", lambda: export(app, "pairs")),
        ("Calibrate the guard", "Choose the scorer and threshold for the current encoder (tstore calibrate)",
         lambda: calibrate(app)),
        ("Evaluate the guard…", "On datasets it never saw (tstore evaluate --holdout NAME, or --by-dataset)", lambda: evaluate(app)),
    ]
