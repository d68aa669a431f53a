"""The query screen, the taxonomy at every level, pairs that stop contrasting, 80×24, and embedding
in place: edit → embed → recompute → CP moves, without leaving the app. Writes are checked in the
database afterwards."""

from __future__ import annotations

import pytest

from conftest import make_tui as make, tui_async, tui_press as press, tui_screen_text, tui_settle, tui_toasts as toasts

pytestmark = pytest.mark.slow

PAIR_TYPES = "xstest-pair-types"
DNA = "do-not-answer"


def cp_runs(store, taxonomy: str) -> dict[str, dict]:
    return {str(r.params["level"]): r for r in store.metric_runs.latest() if r.metric == "cp" and r.params.get("taxonomy") == taxonomy}


@tui_async
async def test_edit_embed_recompute_in_place(tui_store):
    from taxonomy_store.tui.screens.modals import ConfirmModal, EditPromptModal
    from taxonomy_store.tui.screens.pairs import NeighbourTable

    app = make(tui_store, "metrics")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        await press(pilot, "r")
        before = cp_runs(tui_store, PAIR_TYPES)["pair_type"]
        assert tui_store.review.missing_vectors("minilm") == 0

        # a text edit on the safe side of the first pair: its vector is gone until embedded
        await press(pilot, "3")
        pair = app.screen.current
        await press(pilot, "E")
        assert isinstance(app.screen, EditPromptModal)
        await press(pilot, "end", *" right now", "ctrl+s")
        assert tui_store.curation.get_prompt(pair.safe_prompt_id).text.endswith(" right now")
        assert tui_store.review.missing_vectors("minilm") == 1
        title = app.screen.query_one("#pair-safe-nn", NeighbourTable).border_title
        assert title == f"#{pair.safe_prompt_id} not embedded yet under minilm — press 5, then e"

        # recompute offers the embed first; yes embeds (the index holds the writer lock) and recomputes
        await press(pilot, "5")
        assert "1 prompts under minilm — press e to embed" in tui_screen_text(app)
        await press(pilot, "r")
        assert isinstance(app.screen, ConfirmModal)
        assert "Not embedded yet: 1 prompts under minilm" in tui_screen_text(app)
        await press(pilot, "y")
        assert tui_store.review.missing_vectors("minilm") == 0
        after = cp_runs(tui_store, PAIR_TYPES)["pair_type"]
        assert after.id != before.id
        assert "embedded 1 prompts under minilm" in toasts(app)
        screen = app.screen
        assert not screen.running and "computing" not in tui_screen_text(app) and "not embedded" not in tui_screen_text(app)
        await press(pilot, "3")
        assert app.screen.query_one("#pair-safe-nn", NeighbourTable).border_title == "nearest stored prompts"
        assert app.errors == []


@tui_async
async def test_recompute_failure_leaves_no_stuck_status(tui_store):
    from taxonomy_store.errors import NotFound
    from taxonomy_store.tui.screens.modals import ErrorModal

    def broken(**kw):
        kw["progress"]("minilm: metrics", 0, 1)
        raise NotFound("the metric runs broke", "a test failure")

    tui_store.metric_runs.compute_all = broken
    app = make(tui_store, "metrics")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        await press(pilot, "r")
        assert isinstance(app.screen, ErrorModal)
        await press(pilot, "escape")
        assert not app.screen.running and "computing" not in tui_screen_text(app)
        assert "no metric runs yet" in tui_screen_text(app)


@tui_async
async def test_query_score_once_codes_and_stale_calibration(tui_store):
    from taxonomy_store.tui.screens.pairs import NeighbourTable

    tui_store.guard.calibrate("minilm")
    some = tui_store.curation.list_prompts(label="safe", limit=1)[0]
    tui_store.curation.update_prompt(some.id, label="unlabeled")  # the data moves on after calibrating
    app = make(tui_store, "query")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        results = app.screen.query_one("#query-results")
        await pilot.press(*"How can I kill a Python process")
        await pilot.pause()
        assert results.loading  # the model loads and the neighbours are searched: said so
        await tui_settle(pilot)
        assert not results.loading
        text = tui_screen_text(app)
        verdict = next(line for line in text.splitlines() if "unsafe score" in line)
        assert verdict.count("unsafe score") == 1 and verdict.count("threshold") == 1
        assert "score 0." not in verdict.split("threshold")[1]  # the reason, which repeats the score, is left out
        assert "⚠ the store's data changed since encoder 'minilm' was calibrated" in text
        codes = {n.code for n in tui_store.taxonomies.tree(PAIR_TYPES).walk()}
        cats = app.screen.query_one("#query-categories")
        assert {cats.get_row_at(i)[0].plain for i in range(cats.row_count)} <= codes  # codes, not short names
        nn = app.screen.query_one(NeighbourTable)
        assert nn.row_count == 10
        assert app.errors == []


@tui_async
async def test_taxonomy_cp_at_every_level_and_the_panel_follows_t(tui_demo_store):
    from taxonomy_store.tui.widgets import CategoryTree, PromptTable

    app = make(tui_demo_store, "taxonomy", taxonomy=DNA)
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        assert "no CP at risk_area, specific_harm yet: press 5 then r" in tui_screen_text(app)
        await press(pilot, "5", "r", "1", "f5")
        runs = cp_runs(tui_demo_store, DNA)
        assert set(runs) == {"risk_area", "harm_type", "specific_harm"}
        tree = app.screen.query_one(CategoryTree)
        scores = tui_demo_store.review.category_scores("minilm", taxonomy=DNA)
        nodes = list(tui_demo_store.taxonomies.tree(DNA).walk())
        for depth in (0, 1, 2):
            assert any(n.depth == depth and n.code in scores for n in nodes)
        seen = 0
        for line in range(tree.last_line + 1):
            node = tree.get_node_at_line(line)
            if node is not None and node.data in scores:
                assert f" {scores[node.data]:.2f} " in node.label.plain
                seen += 1
        assert seen >= 3
        # the full name and description of the chosen node, wrapped in the right panel
        await press(pilot, "down", "enter")
        code = app.screen.selected
        node = next(n for n in nodes if n.code == code)
        panel = app.screen.query_one("#tax-node-title").render().plain
        assert node.name.split()[0] in panel
        assert app.screen.query_one(PromptTable).row_count > 0
        await press(pilot, "t")  # the next taxonomy: the old node's prompts leave the right panel
        assert app.taxonomy != DNA and app.screen.selected is None
        assert app.screen.query_one(PromptTable).row_count == 0
        assert "select a category" in tui_screen_text(app)
        assert app.errors == []


@tui_async
async def test_pair_with_one_label_on_both_sides_offers_reject(tui_store):
    from taxonomy_store.tui.screens.modals import ConfirmModal

    app = make(tui_store, "pairs")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        pair = app.screen.current
        await press(pilot, "e", "tab", "enter")  # the unsafe side's label select
        app.screen.query_one("#edit-label").value = "safe"
        await press(pilot, "ctrl+s")
        assert tui_store.curation.get_prompt(pair.unsafe_prompt_id).label == "safe"
        assert isinstance(app.screen, ConfirmModal)
        assert f"Both sides of pair #{pair.id} are now safe." in tui_screen_text(app)
        assert "both sides of the pair are now safe" in toasts(app)
        await press(pilot, "y")
        assert tui_store.curation.get_pair(pair.id).status == "rejected"
        assert toasts(app)[-1] == f"pair #{pair.id} accepted → rejected"
        assert app.errors == []


@tui_async
async def test_category_picker_offers_the_prompts_own_taxonomy(tui_store):
    from taxonomy_store.tui.screens.modals import CategoryPicker

    app = make(tui_store, "prompts", taxonomy=DNA)  # browsing Do-Not-Answer, editing an XSTest prompt
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        await press(pilot, "e", "ctrl+t")
        assert isinstance(app.screen, CategoryPicker)
        assert app.screen.tax_tree.name == PAIR_TYPES
        await press(pilot, "escape", "escape", "3")  # the pairs screen: its edit modal has the picker too
        await tui_settle(pilot)
        side = app.screen.shown.unsafe
        await press(pilot, "e", "ctrl+t")
        assert isinstance(app.screen, CategoryPicker)
        assert app.screen.tax_tree.name == side.taxonomy == PAIR_TYPES
        assert app.errors == []


@tui_async
async def test_text_columns_stay_at_80_by_24(tui_store):
    app = make(tui_store, "prompts")
    async with app.run_test(size=(80, 24)) as pilot:
        await tui_settle(pilot)
        for key, table_id, item_text in (
            ("2", "#prompt-table", lambda t: t.current().text),
            ("3", "#pair-unsafe-nn", None),
            ("4", "#suspects-table", None),
        ):
            await press(pilot, key)
            if key == "4":
                await press(pilot, "w")
            table = app.screen.query_one(table_id)
            labels = [c.label.plain for c in table.columns.values()]
            assert labels[-1] == "text"
            row = table.get_row_at(0)
            shown = row[-1].plain.rstrip("…")
            assert len(shown) >= 16
            assert shown[:16] in tui_screen_text(app)  # in view, not scrolled off to the right
        assert app.errors == []
