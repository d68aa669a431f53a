"""The TUI stays open while another process imports and embeds into the same store: the query
screen still answers, with no error modal, and finds the prompts that process wrote."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tui_async, tui_settle

pytestmark = pytest.mark.slow

THINGS = ["kitchen cabinets", "garden fence", "bicycle frame", "attic beams", "porch railing",
          "bathroom tiles", "garage door", "wooden desk", "old bookshelf", "front gate"]
TASKS = ["sand and repaint the", "waterproof the", "fix a squeaky hinge on the", "remove mould from the",
         "measure and level the"]


def new_prompts() -> list[str]:
    """Fifty made-up household questions, none of them in the shared data."""
    return [f"What is the quickest way to {task} {thing} before winter?" for task in TASKS for thing in THINGS]


def tstore(store_dir, *args: str) -> None:
    """The CLI in a separate process, as a curator's second terminal would run it."""
    done = subprocess.run([str(Path(sys.executable).with_name("tstore")), *args, "--store", str(store_dir)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr


@tui_async
async def test_query_after_another_process_imports_and_embeds(tui_store, tmp_path):
    from taxonomy_store.tui import make_app
    from taxonomy_store.tui.screens.modals import ErrorModal
    from taxonomy_store.tui.screens.pairs import NeighbourTable

    texts = new_prompts()  # the tui_store fixture copied the store to tmp_path / "store"
    data = tmp_path / "household.csv"
    with data.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([t, "safe"] for t in texts)
    before = tui_store.curation.list_prompts(limit=100000)

    app = make_app(tui_store, taxonomy="xstest-pair-types", start="taxonomy")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        tstore(tmp_path / "store", "import", str(data))
        tstore(tmp_path / "store", "embed")
        await pilot.press("6")
        await tui_settle(pilot)
        query = texts[17]
        app.screen.query_one("#query-input").value = query
        await pilot.press("enter")
        await tui_settle(pilot)

        assert not any(isinstance(s, ErrorModal) for s in app.screen_stack), app.errors
        assert app.errors == []
        verdict = app.screen.query_one("#query-verdict").render().plain
        assert "unsafe score" in verdict and verdict.split()[0] in ("safe", "unsafe", "uncertain")
        neighbours = [n.text for n in app.screen.query_one(NeighbourTable).items]
        assert neighbours[0] == query  # the prompt the other process wrote is its own nearest neighbour

        await pilot.press("escape", "f5")  # F5 reopens the vector index, then asks again
        await tui_settle(pilot)
        assert not any(isinstance(s, ErrorModal) for s in app.screen_stack), app.errors
        assert app.screen.query_one(NeighbourTable).items[0].text == query
    assert len(tui_store.curation.list_prompts(limit=100000)) == len(before) + len(texts)
