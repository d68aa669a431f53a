"""Query: type a prompt, see the nearest categories and stored neighbours as you type."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import get_current_worker

from taxonomy_store.tui.widgets import heat, safe_text
from taxonomy_store.tui.widgets.fit_table import MeasuredTable
from taxonomy_store.tui.keys import keys
from taxonomy_store.tui.screens.base import StoreScreen, WorkerResult
from taxonomy_store.tui.screens.pairs import NeighbourTable

DEBOUNCE_S = 0.35
# Outside the input these still act: the screen numbers, the keys list, the command palette, quit.
NAVIGATION_KEYS = frozenset("123456?q/")
VERDICT_STYLES = {"unsafe": "bold white on red", "safe": "bold white on green"}


class QueryScreen(StoreScreen):
    MODE, TITLE = "query", "Query"
    BINDINGS = keys("query", """
        escape | clear       | Leave input / clear | clear
        slash  | focus_input | Type a query        | input
        f5     | refresh     | Re-run              | rerun
    """)

    @dataclass
    class Answered(WorkerResult):
        text: str
        result: Any

    def __init__(self, k: int = 10, debounce_s: float = DEBOUNCE_S):
        super().__init__()
        self.k, self.debounce_s = k, debounce_s
        self.text = ""
        self.answered = False

    def compose(self) -> ComposeResult:
        yield from self.chrome()
        yield Input(placeholder="type a prompt: nearest categories and neighbours update as you type", id="query-input",
                    select_on_focus=False)  # coming back, typing goes on after the query, it does not replace it
        yield Static(Text("type a prompt; / comes back here, escape leaves the field", style="dim"), id="query-verdict", classes="status-line")
        yield Static(id="query-warnings", classes="status-line")
        with Horizontal(id="query-results"):
            yield MeasuredTable(id="query-categories", cursor_type="row")
            yield NeighbourTable(id="query-neighbours")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one("#query-warnings", Static).display = False
        self.query_one("#query-categories", DataTable).add_columns("category", "share", "n")
        self.query_one(Input).focus()
        super().on_mount()

    def refresh_data(self) -> None:
        if self.text.strip() and self.encoder:
            self._loading(True)
            self.ask(self.text, self.encoder, self.app.taxonomy, self.app.level_for(self.app.taxonomy), 0.0)

    @on(Input.Changed, "#query-input")
    def _changed(self, event: Input.Changed) -> None:
        self.text = event.value
        if self.text.strip() and self.encoder:
            self._loading(True)
            # exclusive: a newer keystroke cancels the waiting worker before it queries
            self.ask(self.text, self.encoder, self.app.taxonomy, self.app.level_for(self.app.taxonomy), self.debounce_s)

    def _loading(self, on: bool) -> None:
        """The first query loads the encoder's model (seconds): say so instead of showing a bare dash."""
        self.query_one("#query-results").loading = on
        if on and not self.answered:
            self.query_one("#query-verdict", Static).update(
                Text(f"loading encoder {self.encoder} and searching…", style="bold yellow"))

    def worker_failed(self, worker: Any) -> None:
        self._loading(False)

    @on(Input.Submitted, "#query-input")
    def _submitted(self) -> None:
        self.refresh_data()

    @work(thread=True, exclusive=True, exit_on_error=False, group="query.ask")
    def ask(self, text: str, encoder: str, taxonomy: str, level: str, delay: float) -> None:
        worker = get_current_worker()
        if delay:
            time.sleep(delay)
        if worker.is_cancelled:
            return
        result = self.store.guard.query([text], encoder=encoder, k=self.k, taxonomy=taxonomy, level=level)[0]
        if not worker.is_cancelled:
            self.post_message(self.Answered(text, result))

    def on_query_screen_answered(self, msg: Answered) -> None:
        if msg.stale:
            return  # an older read, cancelled by a newer one
        if msg.text != self.text:
            return
        self.answered = True
        self._loading(False)
        r = msg.result
        line = Text()
        line.append(f" {r.verdict} ", style=VERDICT_STYLES.get(r.verdict, "bold reverse"))
        line.append("  unsafe score ")
        line.append_text(heat(r.unsafe_score, 0.0, 1.0, higher_is_better=False, digits=2))
        if getattr(r, "scorer", None):
            line.append(f" ({r.scorer})", style="dim")  # the calibrated scorer that decided, as the CLI names it
        if r.threshold is not None and r.unsafe_score is not None:
            # the score once: the reason would repeat it
            line.append(f" {'≥' if r.unsafe_score >= r.threshold else '<'} threshold {r.threshold:.3f}", style="dim")
            if r.margin:
                line.append(f" ± {r.margin:.2g}", style="dim")
        else:
            line.append("  ")
            line.append_text(safe_text(r.verdict_reason, "dim"))
        top = r.top_category
        if top is not None:
            line.append("  top: ")
            line.append_text(safe_text(top.code, "bold cyan"))  # codes everywhere, as in every table
        self.query_one("#query-verdict", Static).update(line)
        warnings = self.query_one("#query-warnings", Static)
        warnings.display = bool(r.warnings)
        # e.g. a calibration older than the data: the verdict's threshold may no longer fit
        warnings.update(Text("\n").join(safe_text(f"⚠ {w}", "bold yellow") for w in r.warnings))
        cats = self.query_one("#query-categories", DataTable)
        cats.clear()
        for v in r.categories:
            cats.add_row(safe_text(v.code, "cyan", limit=22), heat(v.score, 0.0, 1.0, digits=2), Text(str(v.count)))
        self.query_one(NeighbourTable).show(r.neighbours)

    def main_widget(self) -> Any:
        return self.query_one(NeighbourTable)

    def on_screen_resume(self) -> None:
        # back on the Query screen (its key, the palette, after a modal): keys go into the input again
        super().on_screen_resume()
        self.query_one(Input).focus()

    def on_key(self, event: events.Key) -> None:
        """Outside the input (after escape) a letter still types: only the screen keys, `?` and `q`
        act, so a letter meant for the query never undoes an edit or switches screens."""
        field = self.query_one(Input)
        if field.has_focus or not event.is_printable or not event.character:
            return
        if event.character in NAVIGATION_KEYS:
            return
        event.stop()
        event.prevent_default()
        field.focus()
        field.insert_text_at_cursor(event.character)

    def action_focus_input(self) -> None:
        self.query_one(Input).focus()

    def action_clear(self) -> None:
        if self.leave_input():
            return
        self.query_one(Input).value = ""
        self.query_one("#query-verdict", Static).update(Text("type a prompt", style="dim"))
        self.query_one("#query-warnings", Static).display = False
        self.query_one("#query-categories", DataTable).clear()
        self.query_one("#query-neighbours", DataTable).clear()
