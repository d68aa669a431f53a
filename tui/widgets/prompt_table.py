"""A table of prompts: every cell a Text (inert, no markup), the row key the prompt id."""

from __future__ import annotations

from typing import Any, Iterable

from rich.text import Text
from textual.widgets import DataTable

from .prompt_card import LABEL_STYLES
from .safe_text import safe_text

COLUMNS = ("id", "label", "category", "dataset", "rev", "text")
COMPACT = ("id", "label", "text")


class PromptTable(DataTable):
    DEFAULT_CSS = """
    PromptTable {
        height: 1fr;
    }
    """

    def __init__(self, *args, compact: bool = False, **kwargs):
        super().__init__(*args, cursor_type="row", zebra_stripes=True, **kwargs)
        self.compact = compact  # id, label, text only
        self.prompts: dict[int, Any] = {}

    def on_mount(self) -> None:
        self.add_columns(*(COMPACT if self.compact else COLUMNS))

    def show(self, prompts: Iterable[Any]) -> None:
        keep = self.cursor_row
        self.clear()
        self.prompts = {}
        for p in prompts:
            self.prompts[p.id] = p
            ident = Text(str(p.id), style="dim")
            label = Text(p.label, style=LABEL_STYLES.get(p.label, ""))
            if self.compact:
                cells = [ident, label, safe_text(p.text, limit=200)]
            else:
                cells = [ident, label, safe_text(p.category_code or "", "cyan"), safe_text(p.dataset or "", "dim"),
                         Text(str(p.revision)), safe_text(p.text, limit=200)]
            self.add_row(*cells, key=str(p.id))
        if self.row_count:
            self.move_cursor(row=min(keep, self.row_count - 1))

    def current(self) -> Any | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.prompts.get(int(key)) if key is not None else None
