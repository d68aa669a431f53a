"""Metrics screen: recompute in a worker, stale runs marked, tables follow the stored runs; a suspect
relabelled in the TUI moves the CP values of both categories."""

from __future__ import annotations

import pytest

from conftest import tui_async, tui_press as press, tui_screen_text, tui_settle

pytestmark = pytest.mark.slow

SIZE = (140, 60)
PAIR_TYPES = "xstest-pair-types"


def cp_runs(store) -> dict[str, float]:
    runs = [r for r in store.metric_runs.latest() if r.metric == "cp" and r.params.get("taxonomy") == PAIR_TYPES]
    assert len(runs) == 1
    return {c: d["cp"] for c, d in runs[0].details["per_category"].items()}


def cp_sizes(store) -> tuple[int, dict[str, int]]:
    """(run id, prompts per category) of the newest CP run over the pair types."""
    (run,) = [r for r in store.metric_runs.latest() if r.metric == "cp" and r.params.get("taxonomy") == PAIR_TYPES]
    return run.id, {c: d["prompts"] for c, d in run.details["per_category"].items()}


@tui_async
async def test_recompute_marks_stale_and_follows_a_relabel(tui_store):
    from textual.widgets import DataTable, ProgressBar

    from taxonomy_store.tui import make_app
    from taxonomy_store.tui.screens.metrics import MetricsScreen

    assert tui_store.metric_runs.latest() == []
    app = make_app(tui_store, taxonomy=PAIR_TYPES, start="metrics")
    async with app.run_test(size=SIZE) as pilot:
        await tui_settle(pilot)
        screen: MetricsScreen = app.screen
        assert "no metric runs yet" in tui_screen_text(app)

        await press(pilot, "r")  # recompute every metric for minilm, in a worker
        assert screen.last_progress is not None and screen.last_progress[0] == "done"
        assert not screen.query_one(ProgressBar).display and not screen.running
        metrics = {r.metric for r in tui_store.metric_runs.latest()}
        assert {"cp", "separation", "detect", "baseline"} <= metrics
        before = cp_runs(tui_store)
        run_before, sizes_before = cp_sizes(tui_store)

        # the tables show the stored values
        cp_table = screen.query_one("#metrics-cp", DataTable)
        assert cp_table.row_count == len(before)
        for code, value in before.items():
            assert cp_table.get_row(code)[2].plain == f"{value:.3f}"
        sep_runs = [r for r in tui_store.metric_runs.latest() if r.metric == "separation"]
        assert len(sep_runs) == 2  # one per pair set: XSTest's own twins and Safe-Embed's pairs
        sep_table = screen.query_one("#metrics-separation", DataTable)
        assert sep_table.row_count == sum(len(r.details["per_type"]) for r in sep_runs) >= 10
        for r in sep_runs:
            for t, d in r.details["per_type"].items():
                assert sep_table.get_row(f"{r.params['pair_set']} · {t}")[1].plain == f"{d['norm']:.3f}"
        detect = next(r for r in tui_store.metric_runs.latest() if r.metric == "detect")
        summary = screen.query_one("#metrics-summary", DataTable)
        assert summary.get_row("detect")[1].plain == f"{detect.values['detect_auroc@10']:.3f}"
        assert 0.5 < detect.values["detect_auroc@10"] <= 1.0
        assert "stale" not in tui_screen_text(app)

        # relabel the top category suspect in the Suspects screen (one key), come back
        await press(pilot, "4", "b")
        suspect = app.screen.current()
        old_cat, new_cat = suspect.prompt.category_code, suspect.suggested_category
        await press(pilot, "r")
        assert tui_store.curation.get_prompt(suspect.prompt.id).category_code == new_cat

        await press(pilot, "5", "f5")
        assert app.screen is screen
        assert "stale" in tui_screen_text(app)
        assert ("cp", "minilm") in screen.overview.stale

        await press(pilot, "r")
        after = cp_runs(tui_store)
        # a new run, in which the moved prompt counts in its new category and no longer in its old one
        # (CP counts unsafe prompts only: a safe suspect moves no count; its CP values may or may not
        # move: one prompt's neighbours decide that, not the recompute)
        run_after, sizes_after = cp_sizes(tui_store)
        assert run_after != run_before
        moved = 1 if suspect.prompt.label == "unsafe" else 0
        assert sizes_after[old_cat] == sizes_before[old_cat] - moved
        assert sizes_after.get(new_cat, 0) == sizes_before.get(new_cat, 0) + moved
        # the moved prompt no longer counts in its old category
        sizes = {c: d["prompts"] for c, d in next(r for r in tui_store.metric_runs.latest() if r.metric == "cp").details["per_category"].items()}
        assert cp_table.get_row(old_cat)[1].plain == str(sizes[old_cat])
        assert cp_table.get_row(old_cat)[2].plain == f"{after[old_cat]:.3f}"
        assert "stale" not in tui_screen_text(app)
        assert screen.overview.stale == set()
        assert app.errors == []
