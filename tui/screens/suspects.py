"""Suspects: prompts whose neighbours mostly carry another label or category (lowest purity).

One key (`r`) relabels the highlighted prompt to what its neighbours suggest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Static

from ..widgets import PromptCard, heat, safe_text
from ..widgets.prompt_card import LABEL_STYLES
from .base import StoreScreen
from ..edits import Edit, prompt_change
from .modals import EditPromptModal

LIMIT = 100


class SuspectsScreen(StoreScreen):
    MODE, TITLE = "suspects", "Suspects"
    BINDINGS = [
        Binding("r", "relabel", "Take suggestion", id="suspects.relabel"),
        Binding("e", "edit", "Edit", id="suspects.edit"),
        Binding("b", "toggle_by", "Label/category", id="suspects.by"),
        Binding("u", "app.undo", "Undo", id="suspects.undo"),
        Binding("f5", "refresh", "Reload", id="suspects.reload", show=False),
    ]

    @dataclass
    class Loaded(Message):
        by: str
        suspects: list[Any]
        tree: Any

    @dataclass
    class Changed(Message):
        edit: Edit | None
        prompt_id: int

    def __init__(self, by: str = "label"):
        super().__init__()
        self.by = by
        self.suspects: dict[int, Any] = {}
        self.tax_tree: Any = None
        self.follow_id: int | None = None

    def compose(self) -> ComposeResult:
        yield from self.chrome()
        yield Static(id="suspects-status", classes="status-line")
        yield DataTable(id="suspects-table", cursor_type="row", zebra_stripes=True)
        yield PromptCard(id="suspects-card")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("purity", "id", "label", "category", "suggested", "text")
        table.focus()
        super().on_mount()

    def refresh_data(self) -> None:
        if self.encoder:
            self.load(self.encoder, self.by, self.app.taxonomy)

    @work(thread=True, exclusive=True, exit_on_error=False, group="suspects.load")
    def load(self, encoder: str, by: str, taxonomy: str) -> None:
        suspects = self.store.review.suspects(encoder, by=by, taxonomy=taxonomy, limit=LIMIT)
        tree = self.store.taxonomies.tree(taxonomy)
        self.post_message(self.Loaded(by, suspects, tree))

    def on_suspects_screen_loaded(self, msg: Loaded) -> None:
        if msg.by != self.by:
            return
        self.tax_tree = msg.tree
        table = self.query_one(DataTable)
        keep = table.cursor_row
        shown = self.current()
        follow = self.follow_id if self.follow_id is not None else (shown.prompt.id if shown else None)
        self.follow_id = None
        table.clear()
        self.suspects = {}
        for s in msg.suspects:
            suggestion = s.suggested_label if self.by == "label" else s.suggested_category
            own = s.prompt.label if self.by == "label" else s.prompt.category_code
            if not suggestion or suggestion == own:
                continue  # its neighbours are split, but no other label or category leads: nothing to take
            self.suspects[s.prompt.id] = s
            table.add_row(
                heat(s.purity, 0.0, 1.0, digits=2),
                Text(str(s.prompt.id), style="dim"),
                Text(s.prompt.label, style=LABEL_STYLES.get(s.prompt.label, "")),
                safe_text(s.prompt.category_code or "", "cyan"),
                safe_text(suggestion or "", "bold"),
                safe_text(s.prompt.text, limit=160),
                key=str(s.prompt.id),
            )
        if table.row_count:
            ids = list(self.suspects)
            table.move_cursor(row=ids.index(follow) if follow in ids else min(keep, table.row_count - 1))
        status = Text.assemble(
            (f"{len(msg.suspects)} suspects", "bold"),
            f"  by {self.by}  encoder {self.encoder}  lowest neighbour purity first (k={getattr(msg.suspects[0], 'k', '?') if msg.suspects else '?'})",
        )
        self.query_one("#suspects-status", Static).update(status)
        self._card()

    def current(self) -> Any | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.suspects.get(int(key)) if key is not None else None

    @on(DataTable.RowHighlighted)
    def _card(self) -> None:
        s = self.current()
        self.query_one(PromptCard).show(s.prompt if s else None, "prompt")

    def action_toggle_by(self) -> None:
        self.by = "category" if self.by == "label" else "label"
        self.refresh_data()

    def main_widget(self) -> Any:
        return self.query_one(DataTable)

    def follow(self, entity: str, entity_id: int) -> None:
        if entity == "prompt":
            self.follow_id = entity_id
        self.refresh_data()

    def action_relabel(self) -> None:
        s = self.current()
        if s is None:
            return
        if self.by == "label" and s.suggested_label and s.suggested_label != s.prompt.label:
            self.write(s.prompt, {"label": s.suggested_label})
        elif self.by == "category" and s.suggested_category and s.suggested_category != s.prompt.category_code:
            self.write(s.prompt, {"category": s.suggested_category, "taxonomy": self.app.taxonomy})
        else:
            self.toast(f"prompt #{s.prompt.id}: no suggestion other than its own {self.by}; e edits it", severity="warning")

    def action_edit(self) -> None:
        s = self.current()
        if s is None:
            return
        self.app.push_screen(EditPromptModal(s.prompt, self.tax_tree),
                             lambda changes: changes and self.write(s.prompt, changes))

    @work(thread=True, exclusive=True, exit_on_error=False, group="suspects.write")
    def write(self, old: Any, changes: dict[str, Any]) -> None:
        self.store.curation.update_prompt(old.id, **changes)
        self.post_message(self.Changed(self.audited("prompt", old.id, prompt_change(old, changes)), old.id))

    def on_suspects_screen_changed(self, msg: Changed) -> None:
        self.app.record_edit(msg.edit)
        self.toast(msg.edit.what if msg.edit else f"prompt #{msg.prompt_id} updated")
        self.follow_id = msg.prompt_id
        self.refresh_data()
