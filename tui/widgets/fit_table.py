"""A data table whose last column (a prompt's text) is cut to the room the other columns leave,
so the text stays in view at 80 columns; below `wide_at` columns the optional columns give way."""

from __future__ import annotations

from typing import Any, Iterable

from rich.text import Text
from textual import events
from textual.widgets import DataTable

MIN_TEXT = 16


class FitTable(DataTable):
    """Subclasses give `COLUMNS` (wide), `NARROW` (the columns kept when narrow) and `cells`."""

    COLUMNS: tuple[str, ...] = ()
    NARROW: tuple[str, ...] = ()
    WIDE_AT = 110

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", True)
        super().__init__(*args, **kwargs)
        self.items: list[Any] = []
        self.layout_name = ""

    def key_of(self, item: Any) -> str:
        return str(item.prompt_id)

    def cells(self, item: Any, narrow: bool, text_width: int) -> list[Text]:
        raise NotImplementedError

    def _narrow(self) -> bool:
        return (self.size.width or 200) < self.WIDE_AT

    def on_mount(self) -> None:
        self._columns(self._narrow())

    def _columns(self, narrow: bool) -> None:
        # columns made afresh every time: a DataTable column keeps the widest width it ever had
        name = "narrow" if narrow else "wide"
        self.clear(columns=True)
        self.add_columns(*(self.NARROW if narrow else self.COLUMNS))
        self.layout_name = name

    def show(self, items: Iterable[Any], follow: str | None = None) -> None:
        """Fill the table; the cursor lands on the row keyed `follow` (or the row it was on), or on
        the first row when that one is not listed: never on whatever row now has its old number."""
        if follow is None and self.row_count:
            follow = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        self.items = list(items)
        narrow = self._narrow()
        self._columns(narrow)
        probe = [self.cells(i, narrow, 1)[:-1] for i in self.items]
        others = [max((r[c].cell_len for r in probe), default=0) for c in range(len(probe[0]))] if probe else []
        used = sum(max(w, 3) + 2 for w in others) + 4  # cell padding, the text cell's, a scrollbar
        width = max((self.size.width or 200) - used, MIN_TEXT)
        keys = []
        for i in self.items:
            keys.append(self.key_of(i))
            self.add_row(*self.cells(i, narrow, width), key=keys[-1])
        if self.row_count:
            self.move_cursor(row=keys.index(follow) if follow in keys else 0)

    def on_resize(self, _event: events.Resize) -> None:
        if self.items:
            self.show(self.items)
