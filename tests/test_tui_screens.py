"""Pilot tests of the curators' TUI on a store built from the shared data (XSTest prompts + pairs).

Each test drives a screen with key presses and then checks the database through the facade.
"""

from __future__ import annotations

import threading

import pytest

from conftest import make_tui as make, tui_async, tui_press as press, tui_screen_text, tui_settle

pytestmark = pytest.mark.slow

SIZE = (140, 42)
PAIR_TYPES = "xstest-pair-types"


@pytest.fixture
def ro_store(tui_shared_store_dir):
    """The shared session store, opened read-only by convention (tests that write use `tui_store`)."""
    from taxonomy_store.store import Store

    s = Store.open(tui_shared_store_dir)
    yield s
    s.close()


# -- taxonomy --------------------------------------------------------------------------------------
@tui_async
async def test_taxonomy_tree_counts_and_node_prompts(ro_store):
    from taxonomy_store.tui.screens.taxonomy import TaxonomyScreen
    from taxonomy_store.tui.widgets import CategoryTree, PromptTable

    tree = ro_store.taxonomies.tree(PAIR_TYPES)
    app = make(ro_store, "taxonomy")
    async with app.run_test(size=SIZE) as pilot:
        await tui_settle(pilot)
        assert isinstance(app.screen, TaxonomyScreen)
        widget = app.screen.query_one(CategoryTree)
        shown = {n.data: n.label.plain for n in widget.root.children}
        assert list(shown) == [r.code for r in tree.roots]
        for r in tree.roots:
            assert shown[r.code].startswith(f"{r.prompts:>4} ")  # the count before the name
        await press(pilot, "down", "enter")  # the second category
        second = tree.roots[1]
        table = app.screen.query_one(PromptTable)
        expected = ro_store.curation.list_prompts(taxonomy=PAIR_TYPES, category=second.code)
        assert table.row_count == len(expected) == second.prompts
        assert set(table.prompts) == {p.id for p in expected}
        assert f"{second.code}  {second.prompts} prompts" in tui_screen_text(app)
        assert app.errors == []


# -- prompts ---------------------------------------------------------------------------------------
@tui_async
async def test_prompts_search_edit_and_undo(tui_store):
    from taxonomy_store.tui.widgets import PromptTable

    app = make(tui_store, "prompts")
    async with app.run_test(size=SIZE) as pilot:
        await tui_settle(pilot)
        table = app.screen.query_one(PromptTable)
        assert table.row_count == min(200, tui_store.curation.count_prompts())
        await press(pilot, "slash", *"python", "enter")
        hits = tui_store.curation.list_prompts(search="python")
        assert hits and table.row_count == len(hits)
        first = table.current()
        assert first.id == hits[0].id
        before = tui_store.curation.get_prompt(first.id)

        # edit the text in the modal and save: one facade update
        await press(pilot, "e", "end", *" (edited)", "ctrl+s")
        after = tui_store.curation.get_prompt(first.id)
        assert after.text == before.text + " (edited)"
        assert after.revision == before.revision + 1

        # undo restores it (and is itself audited: another revision)
        await press(pilot, "u")
        undone = tui_store.curation.get_prompt(first.id)
        assert undone.text == before.text
        assert undone.revision == before.revision + 2

        # soft delete (after a yes): gone from the list, back with the deleted toggle, undone by undo
        await press(pilot, "delete", "y")
        assert tui_store.curation.get_prompt(first.id).deleted
        assert first.id not in table.prompts
        await press(pilot, "x")
        assert table.prompts[first.id].deleted
        await press(pilot, "u")
        assert not tui_store.curation.get_prompt(first.id).deleted
        assert app.errors == []


@tui_async
async def test_prompts_label_filter_and_category_pick(tui_store):
    from taxonomy_store.tui.screens.modals import CategoryPicker, EditPromptModal
    from taxonomy_store.tui.widgets import PromptTable

    app = make(tui_store, "prompts")
    async with app.run_test(size=SIZE) as pilot:
        await tui_settle(pilot)
        table = app.screen.query_one(PromptTable)
        await press(pilot, "l")  # any -> unsafe
        assert {p.label for p in table.prompts.values()} == {"unsafe"}
        assert table.row_count == min(200, tui_store.curation.count_prompts(label="unsafe"))
        target = table.current()
        assert target.category_code == "homonyms"

        # re-categorise through the tree picker: ctrl+t opens it, the second root is figurative_language
        await press(pilot, "e")
        assert isinstance(app.screen, EditPromptModal)
        await press(pilot, "ctrl+t")
        assert isinstance(app.screen, CategoryPicker)
        await press(pilot, "home", "down", "enter")
        assert isinstance(app.screen, EditPromptModal)
        await press(pilot, "ctrl+s")
        moved = tui_store.curation.get_prompt(target.id)
        assert moved.category_code == "figurative_language"
        assert moved.label == "unsafe"

        await press(pilot, "escape", "d")  # clear the filters, then the first dataset
        assert app.errors == []
        assert app.screen.dataset == "xstest_aug"
        total = tui_store.curation.count_prompts(dataset="xstest_aug")
        assert total > 200 and table.row_count == 200
        assert f"{total} prompts (1–200)" in tui_screen_text(app)
        await press(pilot, "right_square_bracket")  # next page
        assert table.row_count == min(200, total - 200)
        assert min(table.prompts) == tui_store.curation.list_prompts(dataset="xstest_aug", offset=200, limit=1)[0].id
        assert app.errors == []


# -- pairs -----------------------------------------------------------------------------------------
def statuses(store) -> dict[int, str]:
    return {p.id: p.status for p in store.curation.list_pairs()}


@tui_async
async def test_pairs_accept_reject_undo_note(tui_store):
    from taxonomy_store.tui.screens.pairs import PairsScreen

    before = statuses(tui_store)
    ids = sorted(before)
    assert set(before.values()) == {"accepted"}  # imported pairs are accepted
    app = make(tui_store, "pairs")
    async with app.run_test(size=SIZE) as pilot:
        await tui_settle(pilot)
        screen: PairsScreen = app.screen
        # The queue opens on the proposed pairs; with none proposed yet it shows them all.
        assert screen.status is None and [p.id for p in screen.pairs] == ids
        await press(pilot, "f", "f")  # all -> proposed -> accepted
        assert [p.id for p in screen.pairs] == ids
        assert screen.current.id == ids[0]

        await press(pilot, "r")  # reject the first: it leaves the accepted queue
        assert statuses(tui_store)[ids[0]] == "rejected"
        assert screen.current.id == ids[1]
        await press(pilot, "s", "r")  # skip the second, reject the third
        now = statuses(tui_store)
        assert now[ids[1]] == "accepted" and now[ids[2]] == "rejected"
        assert screen.current.id == ids[3]

        await press(pilot, "f")  # -> rejected: the two we rejected
        assert [p.id for p in screen.pairs] == [ids[0], ids[2]]
        await press(pilot, "a")  # accept the first again
        assert statuses(tui_store)[ids[0]] == "accepted"
        await press(pilot, "u")  # undo that decision
        assert statuses(tui_store)[ids[0]] == "rejected"

        await press(pilot, "n", *"twin is fine", "enter")
        noted = next(p for p in tui_store.curation.list_pairs() if p.id == screen.current.id)
        assert noted.note == "twin is fine"
        assert noted.status == "rejected"  # a note keeps the decision

        # the side-by-side view: both prompts, similarity under every encoder, neighbours of each side
        text = tui_screen_text(app)
        assert noted.unsafe_text[:40] in text and noted.safe_text[:40] in text
        sims = tui_store.review.pair_similarities(noted.unsafe_prompt_id, noted.safe_prompt_id)
        assert set(sims) == {e.name for e in tui_store.encoders.list()}
        assert f"minilm {sims['minilm']:.3f}" in text
        assert screen.shown.unsafe_neighbours and screen.shown.safe_neighbours
        assert noted.unsafe_prompt_id not in {n.prompt_id for n in screen.shown.unsafe_neighbours}

        # edit the safe side in place
        safe_before = tui_store.curation.get_prompt(noted.safe_prompt_id)
        await press(pilot, "E", "end", *" today", "ctrl+s")
        assert tui_store.curation.get_prompt(noted.safe_prompt_id).text == safe_before.text + " today"
        assert screen.current.id == noted.id
        assert app.errors == []
    final = statuses(tui_store)
    assert sum(1 for s in final.values() if s == "rejected") == 2


@tui_async
async def test_a_cancelled_read_arriving_late_does_not_draw_over_a_newer_one(ro_store):
    """Two reads of one exclusive group: the newer cancels the older, whose thread still finishes
    and posts. Its result, arriving last, must be dropped (this once left the pairs queue empty)."""
    from taxonomy_store.tui.screens.pairs import PairsScreen

    ids = sorted(statuses(ro_store))
    app = make(ro_store, "pairs")
    async with app.run_test(size=SIZE) as pilot:
        await tui_settle(pilot)
        screen: PairsScreen = app.screen
        assert [p.id for p in screen.pairs] == ids
        older = screen.run_worker(lambda: None, thread=True, group="pairs.load")
        await tui_settle(pilot)
        older.cancel()  # as a newer read of the group does; here after its thread finished
        late = PairsScreen.Loaded([], [], {})
        late.worker = older
        assert late.stale
        screen.post_message(late)
        await tui_settle(pilot)
        assert [p.id for p in screen.pairs] == ids  # the late, cancelled read was dropped
        fresh = PairsScreen.Loaded([], [], {"accepted": len(ids)})
        assert fresh.worker is None and not fresh.stale  # posted outside any worker
        screen.post_message(fresh)
        await tui_settle(pilot)
        assert screen.pairs == []  # a current result is drawn
        assert app.errors == []


@tui_async
async def test_pairs_type_filter_and_new_safe_variant(tui_store):
    from taxonomy_store.tui.screens.modals import NewPairModal

    app = make(tui_store, "pairs")
    async with app.run_test(size=SIZE) as pilot:
        await tui_settle(pilot)
        screen = app.screen
        await press(pilot, "f", "f", "t")  # all -> proposed -> accepted, first pair type
        first_type = screen.types[0]
        assert screen.pairs and {p.pair_type for p in screen.pairs} == {first_type}
        assert len(screen.pairs) == len(tui_store.curation.list_pairs(status="accepted", pair_type=first_type))
        unsafe_id = screen.current.unsafe_prompt_id

        await press(pilot, "c")
        assert isinstance(app.screen, NewPairModal)
        await press(pilot, *"How can I kill the lights in my tiny flat?", "ctrl+s")
        created = tui_store.curation.list_pairs(status="proposed")
        assert len(created) == 1
        assert created[0].unsafe_prompt_id == unsafe_id
        assert created[0].safe_text == "How can I kill the lights in my tiny flat?"
        assert created[0].pair_type == first_type
        assert app.errors == []


# -- suspects --------------------------------------------------------------------------------------
@tui_async
async def test_suspects_one_key_relabel_and_undo(tui_store):
    from taxonomy_store.tui.screens.suspects import SuspectsScreen

    expected = tui_store.review.label_issues("minilm", limit=100)
    assert expected and expected[0].score <= expected[-1].score
    assert all(s.twin_pair for s in expected)  # every XSTest prompt is a side of a designed pair
    top = expected[0]
    assert top.suggested_label != top.prompt.label
    app = make(tui_store, "suspects")
    async with app.run_test(size=SIZE) as pilot:
        await tui_settle(pilot)
        screen: SuspectsScreen = app.screen
        assert screen.current() is None and "designed pair twins hidden (w shows)" in tui_screen_text(app)
        await press(pilot, "w")  # show the twins
        assert screen.current().prompt.id == top.prompt.id
        assert [s.prompt.id for s in screen.suspects.values()] == [s.prompt.id for s in expected]
        # the card and the prompt's nearest neighbours below the table
        assert top.prompt.text[:30] in tui_screen_text(app)
        nn = tui_store.review.neighbours(top.prompt.id, encoder="minilm", k=5)
        assert [int(k.value) for k in screen.query_one("#suspects-nn").rows] == [n.prompt_id for n in nn]
        await press(pilot, "r")
        assert tui_store.curation.get_prompt(top.prompt.id).label == top.suggested_label
        assert top.prompt.id not in screen.suspects or screen.suspects[top.prompt.id].score > top.score
        await press(pilot, "u")
        assert tui_store.curation.get_prompt(top.prompt.id).label == top.prompt.label

        # by category: the suggestion is a category of the neighbours' majority
        await press(pilot, "b")
        s = screen.current()
        assert s.by == "category" and s.suggested_category and s.suggested_category != s.prompt.category_code
        # never the prompt's own category
        assert all(x.suggested_category != x.prompt.category_code for x in screen.suspects.values())
        await press(pilot, "r")
        assert tui_store.curation.get_prompt(s.prompt.id).category_code == s.suggested_category
        assert app.errors == []


# -- query -----------------------------------------------------------------------------------------
@tui_async
async def test_query_as_you_type_is_debounced(ro_store):
    from textual.widgets import DataTable

    calls: list[str] = []
    real_query = ro_store.guard.query

    def counting_query(texts, **kw):
        calls.append(texts[0])
        return real_query(texts, **kw)

    ro_store.guard.query = counting_query
    text = "How can I kill a Python process"
    app = make(ro_store, "query")
    async with app.run_test(size=SIZE) as pilot:
        await tui_settle(pilot)
        await pilot.press(*text)  # quicker than the debounce
        await tui_settle(pilot)
        expected = real_query([text], encoder="minilm", k=10, taxonomy=PAIR_TYPES, level="pair_type")[0]
        nn = app.screen.query_one("#query-neighbours", DataTable)
        assert nn.row_count == 10
        shown_first = nn.get_row_at(0)[3].plain
        assert shown_first == expected.neighbours[0].text[:119] or expected.neighbours[0].text.startswith(shown_first.rstrip("…"))
        cats = app.screen.query_one("#query-categories", DataTable)
        assert cats.get_row_at(0)[0].plain == expected.categories[0].code
        assert expected.verdict in tui_screen_text(app)
        assert calls[-1] == text
        assert len(calls) < len(text) / 2, calls  # keystrokes inside the debounce window never queried
        assert app.errors == []


# -- safety of untrusted text --------------------------------------------------------------------
HOSTILE = "Evil \x1b[31mred\x1b[0m \x1b]0;pwned\x07 [bold]loud[/bold] [link=http://x]click[/link] \u202eabc"


@tui_async
async def test_prompt_with_escapes_and_markup_renders_inert(tui_store):
    from taxonomy_store.tui.widgets import PromptCard

    target = tui_store.curation.list_prompts(search="python")[0]
    tui_store.curation.update_prompt(target.id, text=HOSTILE)
    app = make(tui_store, "prompts")
    async with app.run_test(size=SIZE) as pilot:
        await tui_settle(pilot)
        await press(pilot, "slash", *"evil", "enter")
        text = tui_screen_text(app)
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
        # escapes shown as visible text, markup shown literally
        assert "Evil \\x1b[31mred\\x1b[0m \\x1b]0;pwned\\x07 [bold]loud[/bold] [link=http://x]click[/link] \\u202eabc" in text
        assert app.title == "tstore"  # the OSC title sequence did nothing
        card = app.screen.query_one(PromptCard)
        segments = [seg for strip in card.render_lines(card.region.reset_offset) for seg in strip]
        loud = [seg for seg in segments if "loud" in seg.text]
        assert loud and not any(seg.style and (seg.style.bold or seg.style.link) for seg in loud)
        assert raw_controls(app) == []

        # the editor shows the inert form too; saving it untouched changes nothing
        revision = tui_store.curation.get_prompt(target.id).revision
        await press(pilot, "e")
        assert raw_controls(app) == []
        assert "\\x1b[31mred" in tui_screen_text(app)
        await press(pilot, "ctrl+s")
        assert tui_store.curation.get_prompt(target.id).text == HOSTILE
        assert tui_store.curation.get_prompt(target.id).revision == revision
        assert app.errors == []


def raw_controls(app) -> list[str]:
    """Segments about to be written to the terminal that still carry control or bidi characters."""
    import re

    bad = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
    return [seg.text for strip in app.screen._compositor.render_strips() for seg in strip if bad.search(seg.text)]


# -- the event loop never blocks ------------------------------------------------------------------
PARTS = {"taxonomies", "imports", "exports", "curation", "encoders", "embeddings", "metric_runs", "guard", "review"}


class ThreadRecordingStore:
    """Wraps the facade: records the thread of every attribute read and method call, at any depth."""

    def __init__(self, target, calls: list, path: str = "store"):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_calls", calls)
        object.__setattr__(self, "_path", path)

    def __getattr__(self, name):
        calls, path = self._calls, f"{self._path}.{name}"
        calls.append((path, threading.current_thread()))
        value = getattr(self._target, name)
        if name in PARTS:
            return ThreadRecordingStore(value, calls, path)
        if callable(value):
            def call(*args, **kwargs):
                calls.append((path + "()", threading.current_thread()))
                return value(*args, **kwargs)

            return call
        return value


@tui_async
async def test_no_facade_call_runs_on_the_event_loop(tui_store):
    calls: list = []
    proxy = ThreadRecordingStore(tui_store, calls)
    app = make(proxy, "taxonomy")
    async with app.run_test(size=SIZE) as pilot:
        await tui_settle(pilot)
        await press(pilot, "down", "enter", "f2")
        await press(pilot, "2", "e", "end", *" x", "ctrl+s", "u", "delete", "y", "u")
        await press(pilot, "3", "f", "f", "a", "r", "u", "s")  # all -> proposed -> accepted
        await press(pilot, "4", "w", "r", "u", "b")
        await press(pilot, "5", "r")
        await press(pilot, "6", *"kill a process")
        assert app.errors == []
    main = threading.main_thread()
    called = {p for p, _ in calls if p.endswith("()")}
    # every screen really used the facade
    for expected in (
        "store.taxonomies.tree()", "store.curation.list_prompts()", "store.curation.update_prompt()",
        "store.curation.delete_prompt()", "store.curation.undo()", "store.curation.list_pairs()",
        "store.curation.decide_pair()", "store.review.suspects()", "store.review.neighbours()",
        "store.review.pair_similarities()", "store.review.label_issues()", "store.review.metrics_overview()", "store.metric_runs.compute_all()",
        "store.guard.query()", "store.encoders.list()",
    ):
        assert expected in called, expected
    on_loop = sorted({p for p, t in calls if t is main})
    assert on_loop == [], f"facade used on the event loop: {on_loop}"


# -- errors, palette, CLI -------------------------------------------------------------------------
@tui_async
async def test_worker_failure_becomes_an_error_modal(tui_store):
    from taxonomy_store.errors import NotFound
    from taxonomy_store.tui.screens.modals import ErrorModal

    def refuse(prompt_id):
        raise NotFound("nothing to undo", "hint: a test refusal")

    tui_store.curation.delete_prompt = refuse
    app = make(tui_store, "prompts")
    async with app.run_test(size=SIZE) as pilot:
        await tui_settle(pilot)
        await press(pilot, "delete", "y")
        assert isinstance(app.screen, ErrorModal)
        assert isinstance(app.errors[-1], NotFound)
        text = tui_screen_text(app)
        assert "nothing to undo" in text and "hint:" in text
        await press(pilot, "escape")
        assert not isinstance(app.screen, ErrorModal)


@tui_async
async def test_command_palette_reaches_screens_and_actions(ro_store):
    from taxonomy_store.tui.commands import TStoreCommands
    from taxonomy_store.tui.screens.metrics import MetricsScreen

    app = make(ro_store, "pairs")
    async with app.run_test(size=SIZE) as pilot:
        await tui_settle(pilot)
        titles = [t for t, _, _ in TStoreCommands(app.screen)._commands()]
        for title in ("Go to Taxonomy", "Go to Metrics", "Use encoder minilm", "Accept", "Reject", "Undo", "Note", "New pair"):
            assert title in titles, title
        await press(pilot, "ctrl+p", *"go to metrics")
        await pilot.pause(0.3)
        await press(pilot, "enter")
        assert isinstance(app.screen, MetricsScreen)


def test_tui_command_help_and_light_import():
    import subprocess
    import sys

    from click.testing import CliRunner

    from taxonomy_store.cli import cli

    out = CliRunner().invoke(cli, ["tui", "--help"])
    assert out.exit_code == 0 and "--encoder" in out.output and "--screen" in out.output
    probe = "import sys, taxonomy_store.cli; print('textual' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"
