"""Snapshot tests of each TUI screen (pytest-textual-snapshot), on our own demo set (seeds/demo).

Deterministic: a fixed terminal size, no clock, no timings or timestamps on screen, every worker
settled before the screenshot, cursors not blinking. Update with
`python -m pytest tests/test_tui_snapshots.py --snapshot-update` and review the SVGs.
"""

from __future__ import annotations

import pytest

from conftest import tui_settle

pytestmark = pytest.mark.slow

# Every screen at a roomy terminal and at the classic 80×24.
SIZES = [pytest.param((160, 48), id="160x48"), pytest.param((80, 24), id="80x24")]


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


@pytest.mark.parametrize("size", SIZES)
def test_taxonomy_screen(snap_compare, demo_store, size):
    # the tree with counts and CP@10 per category; the second risk area expanded, its first harm type listed
    assert snap_compare(app_for(demo_store, "taxonomy"), terminal_size=size, run_before=driving("down", "enter", "down"))


@pytest.mark.parametrize("size", SIZES)
def test_prompts_screen(snap_compare, demo_store, size):
    assert snap_compare(app_for(demo_store, "prompts"), terminal_size=size, run_before=driving("l", "down", "down"))


@pytest.mark.parametrize("size", SIZES)
def test_prompt_edit_modal(snap_compare, demo_store, size):
    assert snap_compare(app_for(demo_store, "prompts"), terminal_size=size, run_before=driving("e"))


@pytest.mark.parametrize("size", SIZES)
def test_category_picker(snap_compare, demo_store, size):
    assert snap_compare(app_for(demo_store, "prompts"), terminal_size=size, run_before=driving("e", "ctrl+t"))


@pytest.mark.parametrize("size", SIZES)
def test_delete_confirmation(snap_compare, demo_store, size):
    assert snap_compare(app_for(demo_store, "prompts"), terminal_size=size, run_before=driving("delete"))


@pytest.mark.parametrize("size", SIZES)
def test_keys_list(snap_compare, demo_store, size):
    assert snap_compare(app_for(demo_store, "pairs"), terminal_size=size, run_before=driving("question_mark"))


@pytest.mark.parametrize("size", SIZES)
def test_pairs_screen(snap_compare, demo_store, size):
    # no pair is proposed, so the queue opens on all pairs; third pair
    assert snap_compare(app_for(demo_store, "pairs"), terminal_size=size, run_before=driving("s", "s"))


@pytest.mark.parametrize("size", SIZES)
def test_suspects_screen(snap_compare, demo_store, size):
    assert snap_compare(app_for(demo_store, "suspects"), terminal_size=size, run_before=driving("b"))


@pytest.mark.parametrize("size", SIZES)
def test_metrics_screen(snap_compare, demo_store, size):
    assert snap_compare(app_for(demo_store, "metrics"), terminal_size=size, run_before=driving())


@pytest.mark.parametrize("size", SIZES)
def test_query_screen(snap_compare, demo_store, size):
    keys = tuple("how do I get into my neighbour's wifi without asking")
    assert snap_compare(app_for(demo_store, "query"), terminal_size=size, run_before=driving(*keys))
