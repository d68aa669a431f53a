"""Our tables never keep a row drawn before its columns were measured.

Textual's DataTable measures the columns of new rows on its next idle event. A row drawn before
that (under load a frame often comes first) is drawn cut to the header's widths and cached; Textual
8 kept that drawing after the measurement, so a settled Prompts screen showed rows like
"2 unsaf classifi Wher" (found by a snapshot test in CI at load 6)."""

from __future__ import annotations

from conftest import tui_async


@tui_async
async def test_a_row_drawn_before_its_columns_are_measured_is_redrawn_after():
    from textual.app import App, ComposeResult

    from taxonomy_store.tui.widgets.fit_table import Sortable

    class One(App):
        def compose(self) -> ComposeResult:
            yield Sortable(id="t")

    app = One()
    async with app.run_test(size=(100, 10)) as pilot:
        table = app.query_one(Sortable)

        def fill() -> None:  # what our screens do on every reload: columns afresh, then the rows
            table.clear(columns=True)
            table.add_columns("id", "label", "text")
            for i in range(5):
                table.add_row(str(i), "unsafe", f"a prompt text number {i} that is long enough", key=str(i))

        fill()
        await pilot.pause()
        await pilot.pause()
        # a reload (a filter, a sort, new data): the same size as before, so Textual sees no resize
        fill()
        # a frame before the idle event: what a busy machine draws first
        early = [table.render_line(y).text for y in range(1, 4)]
        assert "unsafe" not in early[1] and "long enough" not in early[1]  # cut to the header widths
        await pilot.pause()
        await pilot.pause()
        late = [table.render_line(y).text for y in range(1, 4)]
        assert all("unsafe" in line and "long enough" in line for line in late), late
