"""Suspects: prompts whose stored label or category the data doubts.

By label, confident learning (`store.review.label_issues`): out-of-sample probabilities of a
probe on the stored vectors against per-class thresholds, so the base rate of each label counts
and a designed pair twin does not judge its partner; twins are hidden unless `w` shows them
(after the others). By category, the neighbours' majority (`store.review.suspects`), never the
prompt's own category. One key (`r`) takes the suggestion; the card below shows the prompt and
its nearest stored neighbours; the cursor stays on the prompt across reloads and filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, Footer, Static

from taxonomy_store.errors import NotEmbedded

from taxonomy_store.text import inert
from taxonomy_store.tui.edits import Edit, prompt_change
from taxonomy_store.tui.widgets import FitTable, PromptCard, heat, safe_text
from taxonomy_store.tui.widgets.prompt_card import LABEL_STYLES
from taxonomy_store.tui.keys import keys
from taxonomy_store.tui.screens.base import StoreScreen, WorkerResult
from taxonomy_store.tui.screens.modals import ConfirmModal, EditPromptModal, TextInputModal
from taxonomy_store.tui.screens.pairs import NeighbourTable

LIMIT = 100


class SuspectTable(FitTable):
    COLUMNS = ("score", "id", "label", "category", "suggested", "twin", "text")
    NARROW = ("score", "id", "now", "suggested", "text")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.by = "label"
        self.marked: set[int] = set()  # prompt ids marked (space) for one bulk edit

    def key_of(self, s: Any) -> str:
        return str(s.prompt.id)

    def cells(self, s: Any, narrow: bool, text_width: int) -> list[Text]:
        label = Text(s.prompt.label, style=LABEL_STYLES.get(s.prompt.label, ""))
        category = safe_text(s.prompt.category_code or "", "cyan", limit=18 if narrow else 34)
        suggestion = s.suggested_label if self.by == "label" else s.suggested_category
        twin = getattr(s, "twin_pair", None)
        mark = s.prompt.id in self.marked
        cells = [heat(getattr(s, "score", None) if self.by == "label" else s.purity, 0.0, 1.0, digits=2),
                 Text(f"●{s.prompt.id}", style="bold magenta") if mark else Text(str(s.prompt.id), style="dim")]
        if narrow:
            cells += [label if self.by == "label" else category, safe_text(suggestion or "", "bold", limit=18)]
        else:
            cells += [label, category, safe_text(suggestion or "", "bold", limit=34),
                      Text(f"#{twin}" if twin else "", style="magenta")]
        return cells + [safe_text(s.prompt.text, limit=text_width)]


class SuspectsScreen(StoreScreen):
    MODE, TITLE = "suspects", "Suspects"
    BINDINGS = keys("suspects", """
        r  | relabel      | Take suggestion      | relabel
        o  | sort         | Sort by next column  | sort    | hidden
        space | mark      | Mark (bulk r)        | mark    | hidden
        slash | search    | Filter by text       | search  | hidden
        e  | edit         | Edit                 | edit
        b  | toggle_by    | Label/category       | by
        w  | toggle_twins | Show/hide pair twins | twins   | hidden
        u  | app.undo     | Undo                 | undo
        f5 | refresh      | Reload               | reload  | hidden
    """)

    @dataclass
    class Loaded(WorkerResult):
        by: str
        suspects: list[Any]
        tree: Any
        missing: int

    @dataclass
    class NeighboursLoaded(WorkerResult):
        prompt_id: int
        neighbours: list[Any]

    @dataclass
    class Changed(Message):
        edit: Edit | None
        prompt_id: int
        prompt_ids: list[int] | None = None  # a bulk edit: every prompt it changed

    def __init__(self, by: str = "label"):
        super().__init__()
        self.by = by
        self.show_twins = False
        self.loaded: list[Any] = []
        self.suspects: dict[int, Any] = {}
        self.tax_tree: Any = None
        self.follow_id: int | None = None
        self.missing = 0
        self.loading_what: str | None = None  # what a running load reads, for the status line
        self.counts: tuple[int, int] | None = None  # (suspects shown, pair twins) of the list on screen
        self.search = ""  # `/`: only suspects whose text holds this

    def compose(self) -> ComposeResult:
        yield from self.chrome()
        yield Static(id="suspects-status", classes="status-line")
        yield SuspectTable(id="suspects-table")
        with Horizontal(id="suspects-bottom"):
            yield PromptCard(id="suspects-card")
            yield NeighbourTable(id="suspects-nn")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        self.query_one(SuspectTable).focus()
        super().on_mount()

    def main_widget(self) -> Any:
        return self.query_one(SuspectTable)

    def refresh_data(self) -> None:
        if self.encoder:
            self._loading(f"finding suspects by {self.by} under {self.encoder}…")
            self.load(self.encoder, self.by, self.app.taxonomy)

    def _loading(self, what: str | None) -> None:
        """Say what is being read (seconds on a large store); an empty table shows a spinner meanwhile."""
        self.loading_what = what
        table = self.query_one(SuspectTable)
        table.loading = what is not None and not table.row_count
        self._render_status()

    def _render_status(self) -> None:
        status = self._status(*self.counts) if self.counts else Text("")
        if self.loading_what:
            status = Text.assemble((self.loading_what + "  ", "bold yellow"), status)
        self.query_one("#suspects-status", Static).update(status)

    @dataclass
    class Stage(WorkerResult):
        what: str

    @work(thread=True, exclusive=True, exit_on_error=False, group="suspects.load")
    def load(self, encoder: str, by: str, taxonomy: str) -> None:
        review = self.store.review
        self.post_message(self.Stage(f"reading the vectors of {encoder}…"))
        missing = review.missing_vectors(encoder)
        suspects: list[Any]  # LabelIssue by label, Suspect by category: both show a prompt and a suggestion
        what = "out-of-sample label probabilities (5 folds)" if by == "label" else "neighbour categories"
        self.post_message(self.Stage(f"finding suspects by {by}: {what}…"))
        try:
            if by == "label":
                suspects = list(review.label_issues(encoder, limit=LIMIT))
            else:
                suspects = list(review.suspects(encoder, by=by, taxonomy=taxonomy, limit=LIMIT))
        except NotEmbedded:
            suspects = []
        tree = self.store.taxonomies.tree(taxonomy)
        self.post_message(self.Loaded(by, suspects, tree, missing))

    def on_suspects_screen_stage(self, msg: Stage) -> None:
        if not msg.stale and self.loading_what is not None:
            self._loading(msg.what)

    def worker_failed(self, worker: Any) -> None:
        if worker.group == "suspects.load":
            self._loading(None)
            self._show()

    def on_suspects_screen_loaded(self, msg: Loaded) -> None:
        if msg.stale:
            return  # an older read, cancelled by a newer one
        if msg.by != self.by:
            return
        self.loading_what = None
        self.query_one(SuspectTable).loading = False
        self.tax_tree, self.missing, self.loaded = msg.tree, msg.missing, msg.suspects
        self._show()

    def _show(self) -> None:
        shown: list[Any] = []
        twins: list[Any] = []
        needle = self.search.casefold()
        for s in self.loaded:
            if needle and needle not in s.prompt.text.casefold():
                continue
            suggestion = s.suggested_label if self.by == "label" else s.suggested_category
            own = s.prompt.label if self.by == "label" else s.prompt.category_code
            if not suggestion or suggestion == own:
                continue  # its neighbours are split, but no other label or category leads: nothing to take
            (twins if getattr(s, "twin_pair", None) else shown).append(s)
        rows = shown + (twins if self.show_twins else [])
        self.suspects = {s.prompt.id: s for s in rows}
        table = self.query_one(SuspectTable)
        table.by = self.by
        follow = self.follow_id
        self.follow_id = None
        table.show(rows, str(follow) if follow is not None else None)
        self.counts = (len(shown), len(twins))
        self._render_status()
        self._card()

    def _status(self, shown: int, twins: int) -> Text:
        status = Text.assemble((f"{shown} suspects", "bold"), f" by {self.by} · {self.encoder} · ")
        marked = len(self.query_one(SuspectTable).marked)
        if marked:
            status.append(f"{marked} marked: r takes each one's suggestion, one u undoes all · ", style="bold magenta")
        if self.search:
            status.append("text: ")
            status.append_text(safe_text(self.search, "cyan"))
            status.append(" · ")
        if self.by == "label":
            status.append("out-of-sample p(label), least sure first")
            if twins:
                status.append(f" · {twins} designed pair twins {'listed last' if self.show_twins else 'hidden (w shows)'}",
                              style="magenta")
        else:
            status.append("neighbour purity, lowest first")
        if self.missing:
            status.append(f"\n{self.missing} prompts not embedded yet — press 5, then e to embed", style="bold yellow")
        return status

    def current(self) -> Any | None:
        table = self.query_one(SuspectTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.suspects.get(int(key)) if key is not None else None

    @on(DataTable.RowHighlighted, "#suspects-table")
    def _card(self) -> None:
        s = self.current()
        self.query_one(PromptCard).show(s.prompt if s else None, "prompt")
        nn = self.query_one(NeighbourTable)
        nn.show([])  # never the neighbours of the prompt before beside this one
        if s is None or not self.encoder:
            nn.border_title = "nearest stored prompts"
            return
        nn.border_title = f"nearest stored prompts to #{s.prompt.id}: loading…"
        self.load_neighbours(s.prompt.id, self.encoder)

    @work(thread=True, exclusive=True, exit_on_error=False, group="suspects.neighbours")
    def load_neighbours(self, prompt_id: int, encoder: str) -> None:
        self.post_message(self.NeighboursLoaded(prompt_id, self.store.review.neighbours(prompt_id, encoder=encoder, k=5)))

    def on_suspects_screen_neighbours_loaded(self, msg: NeighboursLoaded) -> None:
        if msg.stale:
            return  # an older read, cancelled by a newer one
        s = self.current()
        if s is not None and s.prompt.id == msg.prompt_id:
            nn = self.query_one(NeighbourTable)
            nn.show(msg.neighbours)
            nn.border_title = f"nearest stored prompts to #{msg.prompt_id}"

    def follow(self, entity: str, entity_id: int) -> None:
        if entity == "prompt":
            self.follow_id = entity_id
        self.refresh_data()

    def action_toggle_by(self) -> None:
        self.by = "category" if self.by == "label" else "label"
        s = self.current()
        self.follow_id = s.prompt.id if s else None
        self.refresh_data()

    def action_toggle_twins(self) -> None:
        s = self.current()
        self.follow_id = s.prompt.id if s else None
        self.show_twins = not self.show_twins
        self._show()

    def action_mark(self) -> None:
        s = self.current()
        if s is None:
            return
        table = self.query_one(SuspectTable)
        table.marked ^= {s.prompt.id}
        # the id cell only (a refill would redraw every cell cut to its header until the table measures again)
        mark = s.prompt.id in table.marked
        table.update_cell(str(s.prompt.id), table.ordered_columns[1].key,
                          Text(f"●{s.prompt.id}", style="bold magenta") if mark else Text(str(s.prompt.id), style="dim"),
                          update_width=True)
        table.move_cursor(row=min(table.cursor_row + 1, table.row_count - 1))
        self._render_status()

    def action_search(self) -> None:
        def done(text: str | None) -> None:
            if text is not None:
                s = self.current()
                self.follow_id = s.prompt.id if s else None
                self.search = text.strip()
                self._show()

        self.app.push_screen(TextInputModal("Filter suspects by text (empty: all)", inert(self.search)), done)

    def _bulk(self, by: str) -> dict[int, dict[str, Any]]:
        """Each marked suspect still listed, with its own suggestion (the list on screen decides)."""
        table = self.query_one(SuspectTable)
        out: dict[int, dict[str, Any]] = {}
        for pid in sorted(table.marked):
            s = self.suspects.get(pid)
            if s is None:
                continue
            if by == "label" and s.suggested_label and s.suggested_label != s.prompt.label:
                out[pid] = {"label": s.suggested_label}
            elif by == "category" and s.suggested_category and s.suggested_category != s.prompt.category_code:
                out[pid] = {"category": s.suggested_category, "taxonomy": self.app.taxonomy}
        return out

    def action_relabel(self) -> None:
        table = self.query_one(SuspectTable)
        if table.marked:
            self._confirm_bulk(table)
            return
        s = self.current()
        if s is None:
            return
        # the list on screen decides, not the list asked for: after `b` the old list shows until the new one loads
        by = self.query_one(SuspectTable).by
        if by == "label" and s.suggested_label and s.suggested_label != s.prompt.label:
            self.write(s.prompt, {"label": s.suggested_label})
        elif by == "category" and s.suggested_category and s.suggested_category != s.prompt.category_code:
            self.write(s.prompt, {"category": s.suggested_category, "taxonomy": self.app.taxonomy})
        else:
            self.toast(f"prompt #{s.prompt.id}: no suggestion other than its own {by}; e edits it", severity="warning")

    def _confirm_bulk(self, table: "SuspectTable") -> None:
        """`r` with marks: each marked suspect takes its own suggestion, after a question naming the count."""
        by, changes = table.by, self._bulk(table.by)
        if not changes:
            self.toast("none of the marked prompts has a suggestion other than its own", severity="warning")
            return
        olds = {pid: self.suspects[pid].prompt for pid in changes}
        values = sorted({str(c.get(by)) for c in changes.values()})
        skipped = len(table.marked) - len(changes)
        question = Text.assemble(("Give ", "bold"), (f"{len(changes)} marked prompts", "bold magenta"),
                                 (f" their suggested {by}", "bold"), ("?\n\n", "bold"),
                                 "to ", safe_text(", ".join(values[:6]) + (" …" if len(values) > 6 else ""), "bold cyan"),
                                 f" (ids {', '.join(f'#{p}' for p in sorted(changes)[:8])}{' …' if len(changes) > 8 else ''})\n",
                                 f"{skipped} marked without another suggestion are left as they are.\n" if skipped else "",
                                 ("One audit batch: one u undoes all of it.", "dim"))

        def answered(yes: bool | None) -> None:
            if yes:  # declined: nothing written, the marks stay
                table.marked = set()
                self.write_bulk(olds, changes)

        self.app.push_screen(ConfirmModal(question, yes=f"Change {len(changes)}"), answered)

    def action_edit(self) -> None:
        s = self.current()
        if s is None:
            return
        self.app.push_screen(EditPromptModal(s.prompt, self.tax_tree),
                             lambda changes: changes and self.write(s.prompt, changes))

    @work(thread=True, exclusive=True, exit_on_error=False, group="suspects.write")
    def write(self, old: Any, changes: dict[str, Any]) -> None:
        self.post_message(self.Changed(self.update_prompt(old.id, changes), old.id))

    @work(thread=True, exclusive=True, exit_on_error=False, group="suspects.write")
    def write_bulk(self, old: dict[int, Any], changes: dict[int, dict[str, Any]]) -> None:
        """One audit batch for every marked prompt: one `u` undoes them all."""
        views = self.store.curation.update_prompts(changes)
        batch = next((v.batch for v in views if v.batch), None)
        what = f"{len(changes)} prompts: " + "; ".join(prompt_change(old[pid], change)[len("prompt "):]
                                                       for pid, change in changes.items())
        edit = Edit(batch, what, self.MODE, "prompt", next(iter(changes))) if batch else None
        self.post_message(self.Changed(edit, next(iter(changes)), list(changes)))

    def on_suspects_screen_changed(self, msg: Changed) -> None:
        self.written(msg.edit, f"prompt #{msg.prompt_id} updated")
        # the fixed prompt usually leaves the list: land on the suspect after it (a prompt, not a row number)
        gone = set(msg.prompt_ids or [msg.prompt_id])
        after = self.follow_id = self._after(gone)
        if msg.edit is not None:  # off the list at once (and off the count); the reload then brings the new state
            self.loaded = [s for s in self.loaded if s.prompt.id not in gone]
            self._show()
            self.follow_id = after
        self.refresh_data()

    def _after(self, gone: set[int]) -> int | None:
        """The suspect listed after the last of these prompts (else the one before the first), by id."""
        ids = list(self.suspects)
        at = [ids.index(i) for i in gone if i in ids]
        if not at:
            return None
        later = [i for i in ids[max(at) + 1:] if i not in gone]
        earlier = [i for i in ids[:min(at)] if i not in gone]
        return later[0] if later else (earlier[-1] if earlier else None)
