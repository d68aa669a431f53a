"""Crosswalk: pick SOURCE and TARGET taxonomies, review the proposals, accept / reject / undo.

One row per SOURCE category: its prompts, coverage inside the calibrated radius, the reading
(maps to / splits into / no counterpart, the last in red) and the top target shares; the
highlighted row's example prompts and their nearest TARGET prompt below. `a` accepts the
highlighted proposal, `r` rejects it, `u` undoes this screen's last crosswalk change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Select, Static

from taxonomy_store.tui.keys import keys
from taxonomy_store.tui.screens.base import StoreScreen, WorkerResult
from taxonomy_store.tui.widgets import heat, safe_text
from taxonomy_store.tui.widgets.fit_table import MeasuredTable

NO_COUNTERPART = "no counterpart"


class CrosswalkScreen(StoreScreen):
    MODE, TITLE = "crosswalk", "Crosswalk"
    BINDINGS = keys("crosswalk", """
        a  | accept  | Accept proposal | accept
        r  | reject  | Reject proposal | reject
        u  | undo    | Undo            | undo
        f5 | refresh | Reload          | reload
    """)

    @dataclass
    class Taxonomies(WorkerResult):
        names: list[str]

    @dataclass
    class Proposed(WorkerResult):
        report: Any

    @dataclass
    class Written(WorkerResult):
        what: str
        batch: str | None

    def __init__(self) -> None:
        super().__init__()
        self.source: str | None = None
        self.target: str | None = None
        self.report: Any = None
        self.batches: list[str] = []  # crosswalk batches this screen wrote, oldest first

    def compose(self) -> ComposeResult:
        yield from self.chrome()
        with Horizontal(id="crosswalk-pick"):
            yield Select([], prompt="SOURCE taxonomy", id="crosswalk-source", allow_blank=True)
            yield Select([], prompt="TARGET taxonomy", id="crosswalk-target", allow_blank=True)
        yield Static(Text("pick a SOURCE and a TARGET taxonomy", style="dim"), id="crosswalk-status", classes="status-line")
        yield MeasuredTable(id="crosswalk-table", cursor_type="row")
        yield Static(id="crosswalk-examples")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("source", "prompts", "coverage", "reading", "top shares", "stored")
        self.load_taxonomies()
        super().on_mount()

    def main_widget(self) -> Any:
        return self.query_one(DataTable)

    @work(thread=True, exclusive=True, exit_on_error=False, group="crosswalk.taxonomies")
    def load_taxonomies(self) -> None:
        names = [t["name"] for t in self.store.taxonomies.list() if "pair_type" not in (t["levels"] or [])]
        self.post_message(self.Taxonomies(names))

    def on_crosswalk_screen_taxonomies(self, msg: Taxonomies) -> None:
        options = [(n, n) for n in msg.names]
        target = self.app.taxonomy if self.app.taxonomy in msg.names else (msg.names[0] if msg.names else None)
        source = next((n for n in msg.names if n != target), None)
        for sel, value in ((self.query_one("#crosswalk-source", Select), source), (self.query_one("#crosswalk-target", Select), target)):
            sel.set_options(options)
            if value is not None:
                sel.value = value
        self.source, self.target = source, target
        self.refresh_data()

    @on(Select.Changed)
    def _picked(self, event: Select.Changed) -> None:
        value = None if event.value is Select.BLANK else str(event.value)
        if event.select.id == "crosswalk-source":
            self.source = value
        else:
            self.target = value
        self.refresh_data()

    def refresh_data(self) -> None:
        if self.source and self.target and self.source != self.target and self.encoder:
            self.query_one(DataTable).loading = True
            self.propose(self.source, self.target, self.encoder)

    @work(thread=True, exclusive=True, exit_on_error=False, group="crosswalk.propose")
    def propose(self, source: str, target: str, encoder: str) -> None:
        self.post_message(self.Proposed(self.store.crosswalks.propose(source, target, encoder=encoder)))

    def worker_failed(self, worker: Any) -> None:
        self.query_one(DataTable).loading = False

    def on_crosswalk_screen_proposed(self, msg: Proposed) -> None:
        if msg.stale:
            return
        self.report = r = msg.report
        table = self.query_one(DataTable)
        table.loading = False
        row = table.cursor_row
        table.clear()
        for p in r.proposals:
            lost = p.reading == NO_COUNTERPART
            shares = ", ".join(f"{s.code} {s.share:.2f}" for s in p.shares[:3])
            stored = ", ".join(f"{t}:{s}" for t, s in sorted(p.status.items())) or "–"
            table.add_row(safe_text(p.source, "bold red" if lost else "cyan", limit=30), Text(str(p.prompts)),
                          heat(p.coverage, 0.0, 1.0, digits=2), safe_text(p.label, "bold white on red" if lost else "", limit=40),
                          safe_text(shares, limit=60), safe_text(stored, limit=40), key=p.source)
        if r.proposals:
            table.move_cursor(row=min(max(row, 0), len(r.proposals) - 1))
        self.query_one("#crosswalk-status", Static).update(Text(
            f"{r.source} → {r.target} at {r.target_level}; {r.encoder}, k={r.k}, radius {r.radius:.3f} from {r.radius_from}; "
            f"{sum(p.reading == NO_COUNTERPART for p in r.proposals)} of {len(r.proposals)} with no counterpart", style="dim"))
        self._show_examples()

    @on(DataTable.RowHighlighted, "#crosswalk-table")
    def _highlighted(self) -> None:
        self._show_examples()

    def _current(self) -> Any:
        table = self.query_one(DataTable)
        if self.report is None or not self.report.proposals or table.row_count == 0:
            return None
        return self.report.proposals[min(table.cursor_row, len(self.report.proposals) - 1)]

    def _show_examples(self) -> None:
        p = self._current()
        out = Text()
        if p is not None:
            out.append_text(safe_text(f"{p.source}: {p.label} ({p.why})", "bold"))
            for e in p.examples:
                out.append("\n  ")
                out.append_text(safe_text(e["text"], limit=90))
                out.append("\n    nearest: ", style="dim")
                out.append_text(safe_text(f"[{e['nearest_category'] or '-'}] {e['nearest_text'] or '-'}", "dim", limit=100))
        self.query_one("#crosswalk-examples", Static).update(out)

    # -- decisions ------------------------------------------------------------------------------
    def action_accept(self) -> None:
        self._decide("accepted")

    def action_reject(self) -> None:
        self._decide("rejected")

    def _decide(self, status: str) -> None:
        p = self._current()
        if p is None:
            return
        if not p.targets:
            self.toast(f"{p.source} has no proposed target ({p.label}); map it with `tstore crosswalk ... --accept {p.source}=TARGET`",
                       severity="warning")
            return
        self.write(status, p.source)

    @work(thread=True, exclusive=True, exit_on_error=False, group="crosswalk.write")
    def write(self, status: str, source: str) -> None:
        if status == "accepted":
            rows = self.store.crosswalks.decide(self.report, accept=[source])
        else:
            rows = self.store.crosswalks.decide(self.report, reject=[source])
        what = ", ".join(f"{r.source} → {r.target} {r.status}" for r in rows) or "no change"
        self.post_message(self.Written(what, rows[0].batch if rows else None))

    def action_undo(self) -> None:
        if not self.batches:
            self.toast("nothing to undo: no crosswalk change made on this screen", severity="warning")
            return
        self.undo(self.batches[-1])

    @work(thread=True, exclusive=True, exit_on_error=False, group="crosswalk.write")
    def undo(self, batch: str) -> None:
        self.store.crosswalks.undo(batch)
        self.post_message(self.Written("undone", None))

    def on_crosswalk_screen_written(self, msg: Written) -> None:
        if msg.what == "undone":
            self.batches.pop()
        elif msg.batch:
            self.batches.append(msg.batch)
        self.toast(msg.what)
        self.refresh_data()
