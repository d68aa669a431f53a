"""Snapshot tests of each TUI screen (pytest-textual-snapshot), on our own demo set (seeds/demo).

Deterministic: a fixed terminal size, no clock, no timings or timestamps on screen, every worker
settled before the screenshot, cursors not blinking. Update with
`python -m pytest tests/test_tui_snapshots.py --snapshot-update` and review the SVGs.
"""

from __future__ import annotations

import pytest

from conftest import tui_settle

pytestmark = pytest.mark.slow

SIZE = (140, 42)


@pytest.fixture(scope="module")
def demo_store(tui_demo_store_dir):
    from taxonomy_store.store import Store

    s = Store.open(tui_demo_store_dir)
    yield s
    s.close()


def app_for(store, start: str, taxonomy: str = "do-not-answer"):
    from taxonomy_store.tui import make_app

    return make_app(store, encoder="minilm", taxonomy=taxonomy, start=start)


def driving(*keys: str):
    """A run_before: settle, press the keys (settling after each), stop cursors blinking."""

    async def run(pilot) -> None:
        from textual.widgets import Input, TextArea

        await tui_settle(pilot)
        for k in keys:
            await pilot.press(k)
            await tui_settle(pilot)
        for w in pilot.app.screen.query(Input):
            w.cursor_blink = False
        for w in pilot.app.screen.query(TextArea):
            w.cursor_blink = False
        await tui_settle(pilot)
        assert pilot.app.errors == []

    return run


def test_taxonomy_screen(snap_compare, demo_store):
    # the tree with counts and CP@10 per category; the second risk area expanded, its first harm type listed
    assert snap_compare(app_for(demo_store, "taxonomy"), terminal_size=SIZE, run_before=driving("down", "enter", "down"))


def test_prompts_screen(snap_compare, demo_store):
    assert snap_compare(app_for(demo_store, "prompts"), terminal_size=SIZE, run_before=driving("l", "down", "down"))


def test_prompt_edit_modal(snap_compare, demo_store):
    assert snap_compare(app_for(demo_store, "prompts"), terminal_size=SIZE, run_before=driving("e"))


def test_category_picker(snap_compare, demo_store):
    assert snap_compare(app_for(demo_store, "prompts"), terminal_size=SIZE, run_before=driving("e", "ctrl+t"))


def test_pairs_screen(snap_compare, demo_store):
    # no pair is proposed, so the queue opens on all pairs; third pair
    assert snap_compare(app_for(demo_store, "pairs"), terminal_size=SIZE, run_before=driving("s", "s"))


def test_suspects_screen(snap_compare, demo_store):
    assert snap_compare(app_for(demo_store, "suspects"), terminal_size=SIZE, run_before=driving("b"))


def test_metrics_screen(snap_compare, demo_store):
    assert snap_compare(app_for(demo_store, "metrics"), terminal_size=(140, 60), run_before=driving())


def test_query_screen(snap_compare, demo_store):
    keys = tuple("how do I get into my neighbour's wifi without asking")
    assert snap_compare(app_for(demo_store, "query"), terminal_size=SIZE, run_before=driving(*keys))
