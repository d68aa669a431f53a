"""Metrics: CP per category × encoder, separation per pair type × encoder (a heat table), detection
AUROC; stale runs marked; recompute in a worker with a progress bar, tables update when it ends."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Label, ProgressBar, Static

from taxonomy_store.tui.widgets import heat, safe_text
from taxonomy_store.tui.widgets.fit_table import Sortable
from taxonomy_store.tui.keys import keys
from taxonomy_store.tui.screens.base import StoreScreen, WorkerResult
from taxonomy_store.tui.screens.modals import ConfirmModal

STALE = Text(" stale", style="bold magenta")


def change(now: float | None, before: float | None) -> Text:
    """The change since the run before, as the CLI history shows it: ` (+0.001)`; nothing without one."""
    if now is None or before is None:
        return Text("")
    delta = now - before
    return Text(f" ({delta:+.3f})", style="dim" if abs(delta) < 5e-4 else "bold")


class MetricsScreen(StoreScreen):
    MODE, TITLE = "metrics", "Metrics"
    BINDINGS = keys("metrics", """
        r  | recompute(False) | Recompute                    | recompute
        R  | recompute(True)  | Recompute (all encoders)     | recompute_all | hidden
        e  | embed(False)     | Embed changes                | embed
        o  | sort         | Sort by next column  | sort    | hidden
        B  | reestimate       | Re-estimate baseline b       | baseline      | hidden
        E  | embed(True)      | Embed changes (all encoders) | embed_all     | hidden
        f5 | refresh          | Reload                       | reload        | hidden
    """)

    @dataclass
    class Loaded(WorkerResult):
        overview: Any
        missing: dict[str, int]

    @dataclass
    class NeedsEmbed(Message):
        missing: dict[str, int]
        encoders: list[str] | None

    @dataclass
    class Embedded(Message):
        embedded: int
        encoders: list[str] | None
        then_recompute: bool

    @dataclass
    class Progress(Message):
        label: str
        done: int
        total: int

    @dataclass
    class Recomputed(Message):
        runs: int

    def __init__(self):
        super().__init__()
        self.overview: Any = None
        self.running = False
        self.last_progress: tuple[str, int, int] | None = None

    def compose(self) -> ComposeResult:
        yield from self.chrome()
        yield Static(id="metrics-status", classes="status-line")
        yield ProgressBar(id="metrics-progress", show_eta=False)
        with VerticalScroll(id="metrics-body"):
            yield Label("Detection AUROC and primary values", classes="metrics-title")
            yield Sortable(id="metrics-summary", cursor_type="row")
            yield Label("Separation per pair type × encoder (normalised pair similarity: lower is better)", classes="metrics-title")
            yield Sortable(id="metrics-separation", cursor_type="row")
            yield Label("CP per category × encoder", classes="metrics-title")
            yield Sortable(id="metrics-cp", cursor_type="row", zebra_stripes=True)
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(ProgressBar).display = False
        super().on_mount()

    # -- loading ------------------------------------------------------------------------------
    def refresh_data(self) -> None:
        self.load(self.app.taxonomy, self.app.level_for(self.app.taxonomy))

    @work(thread=True, exclusive=True, exit_on_error=False, group="metrics.load")
    def load(self, taxonomy: str, level: str) -> None:
        overview = self.store.review.metrics_overview(taxonomy=taxonomy, level=level)
        self.post_message(self.Loaded(overview, {e: self.store.review.missing_vectors(e) for e in overview.encoders}))

    def on_metrics_screen_loaded(self, msg: Loaded) -> None:
        if msg.stale:
            return  # an older read, cancelled by a newer one
        if self.running:
            return  # the status line shows the running recompute or embed
        ov = self.overview = msg.overview
        encs = ov.encoders
        status = Text.assemble((f"{len(encs)} encoders", "bold"), f"  taxonomy {ov.taxonomy}  level {ov.level}  data revision {ov.data_revision}")
        if ov.bases:
            status.append("\nadapted (beside their base): ", style="dim")
            status.append_text(safe_text(", ".join(f"{new} from {base}" + (f", {ov.trained_on[new]}" if new in ov.trained_on else "")
                                                   for new, base in ov.bases.items())))
        if ov.baselines:
            status.append("\nb ", style="bold")
            status.append("  ".join(f"{e} {b:.4f} ({whence})" for e, (b, whence) in ov.baselines.items()), style="dim")
            status.append("  B re-estimates", style="dim")
        if ov.stale:
            status.append(f"  {len(ov.stale)} stale runs", style="bold magenta")
        if not ov.runs:
            status.append("  no metric runs yet: press r to compute", style="yellow")
        missing = {e: n for e, n in msg.missing.items() if n}
        if missing:
            status.append("\nnot embedded yet: " + ", ".join(f"{n} prompts under {e}" for e, n in missing.items())
                          + " — press e to embed", style="bold yellow")
        self.query_one("#metrics-status", Static).update(status)

        summary = self.query_one("#metrics-summary", Sortable)
        summary.clear(columns=True)
        summary.add_columns("metric", *encs)
        for metric, per_enc in ov.primary.items():
            cells = []
            for e in encs:
                lo, hi = ov.ranges.get(metric, (0.0, 1.0))
                cell = heat(per_enc.get(e), lo, hi, higher_is_better=metric not in ov.lower_is_better)
                cell.append_text(change(per_enc.get(e), ov.previous.get(metric, {}).get(e)))
                if (metric, e) in ov.stale:
                    cell.append_text(STALE)
                cells.append(cell)
            summary.add_row(safe_text(ov.primary_names.get(metric, metric), "bold"), *cells, key=metric)

        sep = self.query_one("#metrics-separation", Sortable)
        sep.clear(columns=True)
        sep.add_columns("pair type", *encs)
        lo, hi = ov.ranges.get("separation", (0.0, 1.0))
        for ptype, per_enc in ov.separation.items():
            sep.add_row(safe_text(ptype, "cyan"), *[heat(per_enc.get(e), lo, hi, higher_is_better=False) for e in encs], key=ptype)

        cp = self.query_one("#metrics-cp", Sortable)
        cp.clear(columns=True)
        # "scored": the prompts the CP run saw (embedded ones); the Taxonomy screen counts every live prompt
        cp.add_columns("category", "scored", *encs)
        for code, per_enc in ov.cp.items():
            # the code, as the Query screen and every other table name a category (the Taxonomy screen adds the name)
            cp.add_row(safe_text(code, "cyan"), Text(str(ov.category_sizes.get(code, "")), style="dim"),
                       *[heat(per_enc.get(e), 0.0, 1.0) for e in encs], key=code)
        for table in (summary, sep, cp):
            table.apply_sort()

    # -- recompute ----------------------------------------------------------------------------
    def action_recompute(self, all_encoders: bool) -> None:
        if self.running:
            self.notify("a recompute is already running", severity="warning")
            return
        encoders = None if all_encoders else ([self.encoder] if self.encoder else None)
        self._start()
        self.recompute(encoders, self.app.taxonomy, self.app.level_for(self.app.taxonomy))

    def _start(self) -> None:
        self.running = True
        bar = self.query_one(ProgressBar)
        bar.display = True
        bar.update(total=None, progress=0)

    def _progress(self, label: str, done: int, total: int) -> None:
        self.post_message(self.Progress(label, done, total))

    # -- the baseline b, re-estimated only when asked ----------------------------------------------
    def action_reestimate(self) -> None:
        if self.running or not self.encoder:
            return
        self._start()
        self.reestimate(self.encoder)

    @work(thread=True, exclusive=True, exit_on_error=False, group="metrics.recompute")
    def reestimate(self, encoder: str) -> None:
        try:
            [run] = self.store.metric_runs.compute("baseline", encoder=encoder, reestimate_baseline=True)
        finally:
            self.app.call_from_thread(self._recompute_ended)
        self.app.call_from_thread(self.notify, f"{encoder}: b re-estimated = {run.primary_value:.4f}; "
                                  "the pair figures that used the old b are stale: r recomputes", markup=False)

    # -- embed in place -------------------------------------------------------------------------
    def action_embed(self, all_encoders: bool, then_recompute: bool = False) -> None:
        if self.running:
            self.notify("a recompute or embed is already running", severity="warning")
            return
        self._start()
        self.embed(None if all_encoders else ([self.encoder] if self.encoder else None), then_recompute)

    @work(thread=True, exclusive=True, exit_on_error=False, group="metrics.embed")
    def embed(self, encoders: list[str] | None, then_recompute: bool) -> None:
        """Vectors for new and edited prompts (the index part holds the store's writer lock)."""
        try:
            names = encoders or [e.name for e in self.store.encoders.list()]
            embedded = 0
            for name in names:
                summary = self.store.embeddings.embed(
                    name, progress=lambda enc, done, total: self._progress(f"embedding {enc}", done, total),
                    on_wait=lambda why: self._progress(f"waiting for the store's writer lock: {why}", 0, 0),
                )
                embedded += int(summary.embedded or 0) + int(summary.updated or 0)
        finally:
            self.app.call_from_thread(self._recompute_ended)
        self.post_message(self.Embedded(embedded, encoders, then_recompute))

    def on_metrics_screen_embedded(self, msg: Embedded) -> None:
        self.notify(f"embedded {msg.embedded} prompts under {', '.join(msg.encoders or ['every encoder'])}", markup=False)
        if msg.then_recompute:
            self._start()
            self.recompute(msg.encoders, self.app.taxonomy, self.app.level_for(self.app.taxonomy))

    def on_metrics_screen_needs_embed(self, msg: NeedsEmbed) -> None:
        what = ", ".join(f"{n} prompts under {e}" for e, n in msg.missing.items())
        question = Text.assemble(("Not embedded yet: ", "bold"), what,
                                 "\nMetrics read stored vectors, so edited and new prompts need theirs first.\n",
                                 ("Embed them now, then recompute?", "bold"))
        self.app.push_screen(ConfirmModal(question, yes="Embed, then recompute"),
                             lambda yes: self.action_embed(msg.encoders is None, then_recompute=True) if yes else None)

    @work(thread=True, exclusive=True, exit_on_error=False, group="metrics.recompute")
    def recompute(self, encoders: list[str] | None, taxonomy: str, level: str) -> None:
        progress = self._progress
        names = encoders or [e.name for e in self.store.encoders.list()]
        missing = {e: n for e in names if (n := self.store.review.missing_vectors(e))}
        if missing:
            self.app.call_from_thread(self._recompute_ended)
            self.post_message(self.NeedsEmbed(missing, encoders))
            return
        try:
            runs = self.store.metric_runs.compute_all(encoders=encoders, taxonomy=taxonomy, level=level, progress=progress)
            # CP at the taxonomy's other levels too, so the tree shows it at every depth
            others = [lvl for lvl in self.app.levels.get(taxonomy, []) if lvl != level]
            for name in names:
                for n, lvl in enumerate(others):
                    progress(f"{name}: CP at {lvl}", n, len(others))
                    runs += self.store.metric_runs.compute("cp", encoder=name, k=10, level=lvl, taxonomy=taxonomy)
        finally:
            self.app.call_from_thread(self._recompute_ended)
        self.post_message(self.Recomputed(len(runs)))

    def _recompute_ended(self) -> None:
        """Success or failure: the progress bar goes and the status line is read again (never stuck)."""
        self.running = False
        self.query_one(ProgressBar).display = False
        self.refresh_data()

    def resumed(self, data_moved: bool) -> None:
        # edits on other screens make runs stale or prompts unembedded: read the state again on return
        if not self.running and self.is_mounted:
            self.refresh_data()

    def data_changed(self, reload: bool = True) -> None:
        super().data_changed(reload and not self.running)

    def worker_failed(self, worker: Any) -> None:
        if worker.group in ("metrics.recompute", "metrics.embed"):
            self._recompute_ended()

    def on_metrics_screen_progress(self, msg: Progress) -> None:
        if not self.running:
            return  # a late message of a finished run must not put "computing" back on the status line
        self.last_progress = (msg.label, msg.done, msg.total)
        bar = self.query_one(ProgressBar)
        bar.update(total=max(msg.total, 1), progress=msg.done)
        self.query_one("#metrics-status", Static).update(Text(f"computing {msg.label} ({msg.done}/{msg.total})", style="bold yellow"))

    def on_metrics_screen_recomputed(self, msg: Recomputed) -> None:
        self.notify(f"{msg.runs} metric runs computed")
        self.refresh_data()
