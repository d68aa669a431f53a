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


def calibrate(app: "StoreHost") -> None:
    encoder = app.encoder

    def job() -> str:
        cal: Any = app.store.guard.calibrate(encoder)
        scorer = getattr(cal, "scorer", None) or (cal.get("scorer") if isinstance(cal, dict) else None)
        return f"calibrated the guard under {encoder}" + (f": scorer {scorer}" if scorer else "")
    _run(app, f"calibrating the guard under {encoder}", job)


def evaluate(app: "StoreHost") -> None:
    encoder = app.encoder

    def job() -> str:
        run = app.store.evaluation.evaluate(encoder=encoder, by_dataset=True)
        value = f" = {run.primary_value:.3f}" if run.primary_value is not None else ""
        return f"evaluated the guard under {encoder}, each labeled dataset held out in turn: {run.primary_name}{value}"
    _run(app, f"evaluating the guard under {encoder} (each dataset held out in turn)", job)


def palette_tasks(app: "StoreHost") -> list[tuple[str, str, Callable[[], None]]]:
    """(title, help, callback) for the command palette."""
    return [
        ("Import a data file…", "Add prompts and pairs from a file (tstore import)", lambda: import_file(app)),
        ("Export prompts…", "Write every live prompt to a file (tstore export prompts)", lambda: export(app, "prompts")),
        ("Export pairs…", "Write every pair to a file (tstore export pairs)", lambda: export(app, "pairs")),
        ("Calibrate the guard", "Choose the scorer and threshold for the current encoder (tstore calibrate)",
         lambda: calibrate(app)),
        ("Evaluate the guard", "Hold each labeled dataset out in turn (tstore evaluate --by-dataset)", lambda: evaluate(app)),
    ]
