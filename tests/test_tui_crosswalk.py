"""Pilot test of the crosswalk screen: proposals per SOURCE category, no counterpart in red,
`a` accept, `r` reject, `u` undo, checked through the facade."""

from __future__ import annotations

import pytest

from conftest import make_tui, tui_async, tui_press as press, tui_screen_text, tui_settle, tui_toasts
from taxonomy_store.store import init_store
from test_crosswalks import build

pytestmark = pytest.mark.slow


@pytest.fixture
def cw_store(tmp_path):
    store = init_store(tmp_path / "store")
    build(store, tmp_path)
    yield store
    store.close()


def _rows(store):
    return [(r.source, r.target, r.status) for r in store.crosswalks.list()]


@tui_async
async def test_crosswalk_screen_accept_reject_undo(cw_store):
    from textual.widgets import DataTable

    from taxonomy_store.tui.screens.crosswalk import CrosswalkScreen

    app = make_tui(cw_store, "crosswalk", taxonomy="house")
    async with app.run_test(size=(150, 40)) as pilot:
        await tui_settle(pilot)
        screen = app.screen
        assert isinstance(screen, CrosswalkScreen)
        assert (screen.source, screen.target) == ("bench", "house")
        table = screen.query_one("#crosswalk-table", DataTable)
        sources = [table.get_row_at(i)[0].plain for i in range(table.row_count)]
        assert sources == [p.source for p in screen.report.proposals] and set(sources) == {"bombs", "lyrics", "mixed", "phishing"}
        lyrics = sources.index("lyrics")
        assert table.get_row_at(lyrics)[3].plain == "no counterpart"
        assert "red" in str(table.get_row_at(lyrics)[0].style)
        text = tui_screen_text(app)
        assert "1 of 4 with no counterpart" in text
        table.focus()
        table.move_cursor(row=sources.index("bombs"))
        await press(pilot, "a")
        assert _rows(cw_store) == [("bombs", "weapons", "accepted")]
        assert "weapons:accepted" in table.get_row_at(sources.index("bombs"))[5].plain
        table.move_cursor(row=sources.index("mixed"))
        await press(pilot, "r")
        assert sorted(_rows(cw_store)) == [("bombs", "weapons", "accepted"), ("mixed", "fraud", "rejected"),
                                           ("mixed", "weapons", "rejected")]
        await press(pilot, "u")
        assert _rows(cw_store) == [("bombs", "weapons", "accepted")]
        table.move_cursor(row=lyrics)
        await press(pilot, "a")
        assert any("lyrics has no proposed target" in t for t in tui_toasts(app))
        await press(pilot, "u", "u")
        assert _rows(cw_store) == []
        assert any("nothing to undo" in t for t in tui_toasts(app))
        assert app.errors == []
