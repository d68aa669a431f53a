"""A table of prompts: every cell a Text (inert, no markup), the row key the prompt id.

The text column is cut to the width left by the others, so it stays in view at 80 columns;
below `WIDE` columns the dataset and revision columns give way to it."""

from __future__ import annotations

from typing import Any, Iterable

from rich.text import Text
from textual import events
from textual.widgets import DataTable

from taxonomy_store.tui.widgets.fit_table import Sortable
from taxonomy_store.tui.widgets.prompt_card import LABEL_STYLES
from taxonomy_store.tui.widgets.safe_text import safe_text

COLUMNS = ("id", "label", "category", "dataset", "rev", "text")
NARROW = ("id", "label", "category", "text")
COMPACT = ("id", "label", "text")
WIDE = 110
CATEGORY_WIDTH = {"wide": 40, "narrow": 16}
MIN_TEXT = 16


class PromptTable(Sortable):
    DEFAULT_CSS = """
    PromptTable {
        height: 1fr;
    }
    """

    def __init__(self, *args, compact: bool = False, **kwargs):
        super().__init__(*args, cursor_type="row", zebra_stripes=True, **kwargs)
        self.compact = compact  # id, label, text only
        self.prompts: dict[int, Any] = {}
        self.order: list[Any] = []
        self.layout_name = ""
        # prompt ids marked (space) for one bulk edit: by id, so a mark survives paging, sorting and filters
        self.marked: set[int] = set()

    def _layout(self) -> str:
        if self.compact:
            return "compact"
        return "wide" if (self.size.width or 200) >= WIDE else "narrow"

    def _columns(self, layout: str) -> tuple[str, ...]:
        return {"compact": COMPACT, "narrow": NARROW, "wide": COLUMNS}[layout]

    def _cells(self, p: Any, layout: str, text_width: int) -> list[Text]:
        ident = self.id_cell(p.id)
        label = Text(p.label, style=LABEL_STYLES.get(p.label, ""))
        text = safe_text(p.text, limit=text_width)
        if layout == "compact":
            return [ident, label, text]
        category = safe_text(p.category_code or "", "cyan", limit=CATEGORY_WIDTH[layout])
        if layout == "narrow":
            return [ident, label, category, text]
        return [ident, label, category, safe_text(p.dataset or "", "dim", limit=20), Text(str(p.revision)), text]

    def id_cell(self, prompt_id: int) -> Text:
        return Text(f"●{prompt_id}", style="bold magenta") if prompt_id in self.marked else Text(str(prompt_id), style="dim")

    def toggle_mark(self, prompt_id: int) -> bool:
        """Mark or unmark one listed prompt; redraws its id cell only. True when it is marked now."""
        self.marked ^= {prompt_id}
        if str(prompt_id) in self.rows:
            self.update_cell(str(prompt_id), self.ordered_columns[0].key, self.id_cell(prompt_id), update_width=True)
        return prompt_id in self.marked

    def clear_marks(self) -> None:
        was, self.marked = self.marked, set()
        for prompt_id in was:
            if str(prompt_id) in self.rows:
                self.update_cell(str(prompt_id), self.ordered_columns[0].key, self.id_cell(prompt_id), update_width=True)

    def _text_width(self, rows: list[list[Text]]) -> int:
        """Columns left for the text once the other cells (and the cell padding) are laid out."""
        others = [max((r[i].cell_len for r in rows), default=0) for i in range(len(rows[0]) - 1)] if rows else []
        used = sum(max(w, 3) + 2 for w in others) + 2 + 2  # padding per cell, the text cell's, a scrollbar
        return max((self.size.width or 200) - used, MIN_TEXT)

    def show(self, prompts: Iterable[Any], follow_id: int | None = None) -> None:
        """Fill the table; the cursor lands on `follow_id` (or the prompt it was on) when listed,
        else on the first row: never on whatever prompt now has the old row number."""
        current = self.current()
        follow = follow_id if follow_id is not None else (current.id if current is not None else None)
        self.order = list(prompts)
        layout = self._layout()
        # columns made afresh every time: a DataTable column keeps the widest width it ever had
        self.clear(columns=True)
        self.add_columns(*self._columns(layout))
        self.layout_name = layout
        self.prompts = {p.id: p for p in self.order}
        probe = [self._cells(p, layout, 1) for p in self.order]
        width = self._text_width(probe)
        for p in self.order:
            self.add_row(*self._cells(p, layout, width), key=str(p.id))
        self.apply_sort()
        if self.row_count:
            ids = [p.id for p in self.order]
            self.move_cursor(row=self.get_row_index(str(follow)) if follow in ids else 0)

    def on_resize(self, _event: events.Resize) -> None:
        if self.order:
            self.show(self.order)

    def current(self) -> Any | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.prompts.get(int(key)) if key is not None else None

    def on_mount(self) -> None:
        self.layout_name = self._layout()
        self.add_columns(*self._columns(self.layout_name))
