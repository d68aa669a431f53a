"""A data table whose last column (a prompt's text) is cut to the room the other columns leave,
so the text stays in view at 80 columns; below `wide_at` columns the optional columns give way."""

from __future__ import annotations

from typing import Any, Iterable

from rich.text import Text
from textual import events
from textual.widgets import DataTable

MIN_TEXT = 16


def sort_key(cell: Any) -> tuple:
    """Numbers by value (a mark or # before them ignored), then text, case-insensitive; blanks last."""
    plain = (cell.plain if isinstance(cell, Text) else str(cell)).strip().lstrip("●#")
    if not plain or plain == "—":
        return (2, 0.0, "")
    try:
        return (0, float(plain.split()[0]), "")
    except ValueError:
        return (1, 0.0, plain.casefold())


class MeasuredTable(DataTable):
    """A DataTable that never keeps a row drawn before its columns were measured."""

    def _update_dimensions(self, new_rows) -> None:
        # Textual (8.2) measures new rows' columns on its next idle event, but keeps the rows it drew
        # before that (cut to the header's widths: a busy machine draws a frame first) in its render
        # caches when the table's size did not change, e.g. on a reload. Drop those drawings.
        super()._update_dimensions(new_rows)
        self.notify_style_update()

    def _update_column_widths(self, updated_cells) -> None:
        super()._update_column_widths(updated_cells)  # update_cell(update_width=True): the same
        self.notify_style_update()


class Sortable(MeasuredTable):
    """A table sorted by any column: click its header, or `o` on the screen for the next column
    (again on the same column: reversed). The order survives reloads; the cursor stays on its row."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sort_column: int | None = None
        self.sort_reverse = False

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(event.column_index)

    def sort_by(self, index: int) -> None:
        if index == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = index, False
        keep = self.coordinate_to_cell_key(self.cursor_coordinate).row_key if self.row_count else None
        self.apply_sort()
        if keep is not None and keep in self.rows:
            self.move_cursor(row=self.get_row_index(keep))

    def sort_next(self) -> None:
        """`o`: the next column, ascending (or the same one reversed, once: then on to the next)."""
        n = len(self.ordered_columns)
        if not n:
            return
        if self.sort_column is not None and not self.sort_reverse:
            self.sort_by(self.sort_column)
        else:
            self.sort_by(((self.sort_column if self.sort_column is not None else -1) + 1) % n)

    def apply_sort(self) -> None:
        if self.sort_column is None or self.sort_column >= len(self.ordered_columns) or not self.row_count:
            return
        self.sort(self.ordered_columns[self.sort_column].key, key=sort_key, reverse=self.sort_reverse)

    def sort_label(self) -> str:
        if self.sort_column is None or self.sort_column >= len(self.ordered_columns):
            return ""
        return f"sorted by {self.ordered_columns[self.sort_column].label.plain} {'↓' if self.sort_reverse else '↑'}"


class FitTable(Sortable):
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
        self.apply_sort()
        if self.row_count:
            self.move_cursor(row=self.get_row_index(follow) if follow in keys else 0)

    def on_resize(self, _event: events.Resize) -> None:
        if self.items:
            self.show(self.items)
