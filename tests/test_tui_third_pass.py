"""The curators' TUI, third pass (issue 23): no key changes data the curator did not mean to change,
screens never show stale data, and the review queue fills itself (pair mining).

Pilot tests on the deterministic hashing encoder (the model's behaviour is not the point here):
each drives the app and then checks the database."""

from __future__ import annotations

import shutil

import pytest

from conftest import make_tui as make, tui_async, tui_press as press, tui_screen_text, tui_settle, tui_toasts as toasts
from conftest import use_hashing_encoder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hashed_store_dir(tmp_path_factory, shared_datasets):
    """The README store (Do-Not-Answer, XSTest prompts, Safe-Embed's XSTest pairs; both taxonomies), hashing-encoded."""
    from taxonomy_store.store import init_store

    path = tmp_path_factory.mktemp("tui3") / "store"
    s = init_store(path)
    try:
        for name in ("do-not-answer", "xstest-pair-types"):
            s.taxonomies.load(name)
        for f in ("do_not_answer.csv", "xstest_prompts.csv", "xstest_aug.csv"):
            s.imports.import_file(shared_datasets / f)
        use_hashing_encoder(s)
        s.embeddings.embed()
    finally:
        s.close()
    return path


@pytest.fixture
def hstore(hashed_store_dir, tmp_path):
    from taxonomy_store.store import Store

    shutil.copytree(hashed_store_dir, tmp_path / "store")
    s = Store.open(tmp_path / "store")
    use_hashing_encoder(s)
    yield s
    s.close()


# -- 1: the Query screen always types ---------------------------------------------------------
@tui_async
async def test_query_keys_type_into_the_input_and_never_undo(hstore):
    from textual.widgets import Input

    app = make(hstore, "suspects")
    async with app.run_test(size=(80, 24)) as pilot:
        await tui_settle(pilot)
        await press(pilot, "w")
        s = app.screen.current()
        await press(pilot, "r")  # one edit of this run: `u` would undo it
        after = hstore.curation.get_prompt(s.prompt.id).label
        assert after == s.suggested_label
        await press(pilot, "6", *"how to", "escape", "1", "6")  # leave, come back: the input has the keys again
        field = app.screen.query_one(Input)
        assert field.has_focus
        await press(pilot, *"u q")
        assert field.value == "how tou q" and app.current_mode == "query"
        await press(pilot, "escape")  # out of the input: a letter still types, it never undoes
        assert not field.has_focus
        await press(pilot, "u")
        assert field.has_focus and field.value == "how tou qu"
        assert hstore.curation.get_prompt(s.prompt.id).label == after
        assert app.current_mode == "query" and not any(t.startswith("undone") for t in toasts(app))
        await press(pilot, "escape", "2")  # the screen numbers still switch once out of the input
        assert app.current_mode == "prompts"
        assert app.errors == []


# -- 2: after a list change the cursor stays on the prompt or goes to the top ------------------
@tui_async
async def test_switching_suspect_lists_never_leaves_the_cursor_on_another_prompt(hstore):
    from taxonomy_store.tui.screens.suspects import SuspectTable

    app = make(hstore, "suspects")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        await press(pilot, "w", "down", "down", "down")
        table = app.screen.query_one(SuspectTable)
        before = app.screen.current().prompt.id
        await press(pilot, "b")
        assert table.by == "category"
        now = app.screen.current()
        ids = [int(k.value) for k in table.rows]
        assert now is not None
        assert now.prompt.id == before or (before not in ids and table.cursor_row == 0)
        await press(pilot, "down", "down")
        target = app.screen.current()
        await press(pilot, "r")  # relabels (recategorises) the prompt on screen, nothing else
        changed = hstore.curation.get_prompt(target.prompt.id)
        assert changed.category_code == target.suggested_category
        # the cursor moves to the suspect after it, by prompt id
        assert app.screen.current() is None or app.screen.current().prompt.id != target.prompt.id
        assert app.errors == []


def test_fit_table_goes_to_the_top_when_its_prompt_left():
    """Unit check of the rule: a row key not listed any more puts the cursor on row 0, never row n."""
    import asyncio
    from types import SimpleNamespace

    from rich.text import Text
    from textual.app import App

    from taxonomy_store.tui.widgets.fit_table import FitTable

    class Table(FitTable):
        COLUMNS = NARROW = ("id", "text")

        def key_of(self, item):
            return str(item.id)

        def cells(self, item, narrow, width):
            return [Text(str(item.id)), Text(item.text)]

    class Host(App):
        def compose(self):
            yield Table()

    async def run():
        app = Host()
        async with app.run_test() as pilot:
            t = app.query_one(Table)
            t.show([SimpleNamespace(id=i, text=f"p{i}") for i in range(10)])
            t.move_cursor(row=5)
            await pilot.pause()
            t.show([SimpleNamespace(id=i, text=f"p{i}") for i in range(20, 30)])
            assert t.cursor_row == 0
            t.move_cursor(row=4)
            await pilot.pause()
            t.show([SimpleNamespace(id=i, text=f"p{i}") for i in (99, 24, 20)])
            assert t.cursor_row == 1  # prompt 24 is still listed: the cursor stays on it

    asyncio.run(run())


# -- 10: recompute never moves figures nobody touched: b is pinned -----------------------------
def _separation(store):
    """The newest separation run of the XSTest pair set."""
    return [r for r in store.metric_runs.latest() if r.metric == "separation"][-1]


def test_baseline_b_stays_pinned_until_asked_or_its_sample_changes(hstore):
    review = hstore.review
    hstore.metric_runs.compute_all(encoders=["minilm"], taxonomy="xstest-pair-types")
    first = _separation(hstore)
    b0 = first.details["baseline"]
    assert first.details["baseline_source"]["pinned"] is False  # estimated on this first run, then pinned
    sample = set(first.details["baseline_source"]["estimate"]["sample_ids"])
    assert 2 <= len(sample) <= 1000

    # a label edit: no vector moves (the stratified draw follows labels: it used to move b)
    target = hstore.curation.list_prompts(label="unsafe", limit=1)[0]
    hstore.curation.update_prompt(target.id, label="safe")
    hstore.metric_runs.compute_all(encoders=["minilm"], taxonomy="xstest-pair-types")
    second = _separation(hstore)
    assert second.id != first.id
    assert second.details["baseline"] == b0 and second.details["baseline_source"]["pinned"] is True
    assert second.details["per_type"] == first.details["per_type"]  # not one figure moved
    assert second.primary_value == first.primary_value

    # asked for: a new estimate; the separation run that used the old b is stale until recomputed
    [est] = hstore.metric_runs.compute("baseline", encoder="minilm")
    assert est.details["estimate"]["baseline"] != b0  # the draw follows the edited labels
    assert second.id in {r.id for r in hstore.metric_runs.stale()}
    hstore.metric_runs.compute_all(encoders=["minilm"], taxonomy="xstest-pair-types")
    assert _separation(hstore).details["baseline"] == est.values["baseline_estimate"]

    # the data it was estimated from changes (a sampled prompt's text): estimated again, on its own
    pinned = hstore.metric_runs.pinned_baseline("minilm")
    sampled = min(pinned["sample_ids"])
    hstore.curation.update_prompt(sampled, text=hstore.curation.get_prompt(sampled).text + " (edited)")
    hstore.embeddings.embed("minilm")
    hstore.metric_runs.compute_all(encoders=["minilm"], taxonomy="xstest-pair-types")
    fourth = _separation(hstore)
    assert fourth.details["baseline_source"]["pinned"] is False
    assert fourth.details["baseline_source"]["estimate"]["sample_fingerprint"] != pinned["sample_fingerprint"]


@tui_async
async def test_metrics_screen_shows_b_and_the_change_since_the_previous_run(hstore):
    from textual.widgets import DataTable

    hstore.metric_runs.compute_all(encoders=["minilm"], taxonomy="xstest-pair-types")
    before = {r.metric: r.primary_value for r in hstore.metric_runs.latest()}
    target = hstore.curation.list_prompts(label="unsafe", limit=1)[0]
    hstore.curation.update_prompt(target.id, label="safe")
    app = make(hstore, "metrics")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        await press(pilot, "r")
        text = tui_screen_text(app)
        b = _separation(hstore).details["baseline"]
        assert f"minilm {b:.4f} (estimated from " in text and ", pinned)" in text and "B re-estimates" in text
        after = {r.metric: r.primary_value for r in hstore.metric_runs.latest()}
        row = app.screen.query_one("#metrics-summary", DataTable).get_row("detect")
        assert f"({after['detect'] - before['detect']:+.3f})" in row[1].plain
        summary = app.screen.query_one("#metrics-summary", DataTable)
        sep = summary.get_row(next(k.value for k in summary.rows if k.value.startswith("separation")))
        assert "(+0.000)" in sep[1].plain  # b pinned: the pair figures did not move
        await press(pilot, "B")
        assert "b re-estimated" in toasts(app)[-1]
        assert app.errors == []


# -- 13: pair mining fills the review queue -------------------------------------------------------
def test_mined_proposals_are_new_twins_most_needed_first_and_one_undo(hstore):
    existing = {(p.unsafe_prompt_id, p.safe_prompt_id) for p in hstore.curation.list_pairs()}
    assert len(hstore.curation.list_pairs()) == 450 and all(p.status == "accepted" for p in hstore.curation.list_pairs())
    dry = hstore.pair_mining.propose(encoder="minilm", limit=12, write=False)
    assert len(dry) == 12 and hstore.curation.list_pairs(status="proposed") == []
    for p in dry:
        assert (p.unsafe_id, p.safe_id) not in existing
        assert hstore.curation.get_prompt(p.unsafe_id).label == "unsafe"
        assert hstore.curation.get_prompt(p.safe_id).label == "safe"
        assert 0.45 <= p.similarity <= 0.97 and p.reason.startswith("mined: nearest")
    sides = [p.unsafe_id for p in dry] + [p.safe_id for p in dry]
    assert len(sides) == len(set(sides))  # each prompt in one proposal at most
    # most needed first: Do-Not-Answer harm categories hold no pairs yet, so they come first, spread out
    first = dry[0]
    assert first.harm_category is not None and f"harm {first.harm_category}: 0 pairs" in first.reason
    assert len({p.harm_category for p in dry[:6]}) >= 4

    written = hstore.pair_mining.propose(encoder="minilm", limit=12)
    assert [(p.unsafe_id, p.safe_id) for p in written] == [(p.unsafe_id, p.safe_id) for p in dry]
    queue = hstore.curation.list_pairs(status="proposed")
    assert len(queue) == 12 and {q.pair_set for q in queue} == {"mined"}
    assert {q.note for q in queue} == {p.reason for p in written}
    assert len({p.batch for p in written}) == 1
    again = hstore.pair_mining.propose(encoder="minilm", limit=12, write=False)
    assert not {(p.unsafe_id, p.safe_id) for p in again} & {(p.unsafe_id, p.safe_id) for p in written}  # never twice
    hstore.curation.undo(written[0].batch)  # the whole run, in one undo
    assert hstore.curation.list_pairs(status="proposed") == []


def test_pair_propose_command(hstore):
    import json

    from click.testing import CliRunner

    from taxonomy_store.cli import cli

    store_dir = str(hstore.dir)
    hstore.close()
    out = CliRunner().invoke(cli, ["--store", store_dir, "pair", "propose", "--limit", "3", "--json"])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 3 and all(r["pair_id"] for r in rows)
    listed = CliRunner().invoke(cli, ["--store", store_dir, "pair", "list", "--status", "proposed", "--json"])
    assert sorted(json.loads(line)["id"] for line in listed.stdout.splitlines()) == sorted(r["pair_id"] for r in rows)


@tui_async
async def test_m_proposes_pairs_into_the_queue_with_their_reason(hstore):
    from taxonomy_store.tui.screens.pairs import NeighbourTable

    app = make(hstore, "pairs")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        assert app.screen.status is None  # only accepted pairs: the queue opened on all of them
        await press(pilot, "m")
        screen = app.screen
        assert screen.status == "proposed" and len(screen.pairs) == 20
        assert "20 mined pairs proposed" in toasts(app)[-1]
        text = tui_screen_text(app)
        assert "note: mined: nearest" in text and "proposed 20" in text
        firsts = [p.id for p in screen.pairs[:3]]
        await press(pilot, "a", "a", "a")  # accept three
        assert [hstore.curation.get_pair(i).status for i in firsts] == ["accepted"] * 3
        await press(pilot, "u")  # one key undoes the last accept only
        assert [hstore.curation.get_pair(i).status for i in firsts] == ["accepted", "accepted", "proposed"]
        assert app.errors == []


@tui_async
async def test_accepting_an_accepted_pair_is_no_edit_and_an_empty_queue_shows_nothing_old(hstore):
    from taxonomy_store.tui.screens.pairs import NeighbourTable

    app = make(hstore, "pairs")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        pair = app.screen.current
        assert pair.status == "accepted"
        await press(pilot, "a")
        assert toasts(app)[-1] == f"pair #{pair.id} is already accepted" and app.edits == []
        assert hstore.curation.decide_pair(pair.id, "accepted").batch is None  # the library agrees: no batch
        await press(pilot, "m", "u")  # propose, then undo the proposals: the proposed queue is empty again
        assert app.screen.pairs == [] and hstore.curation.list_pairs(status="proposed") == []
        await pilot.resize_terminal(120, 40)
        await tui_settle(pilot)
        for table in app.screen.query(NeighbourTable):
            assert table.row_count == 0 and table.border_title == "nearest stored prompts"
        assert "not embedded yet" not in tui_screen_text(app)
        assert "no pairs match the filters" in tui_screen_text(app)
        assert app.errors == []


@tui_async
async def test_slash_searches_the_pairs(hstore):
    app = make(hstore, "pairs")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        await press(pilot, "slash", *"python", "enter")
        pairs = app.screen.pairs
        assert pairs and all("python" in (p.unsafe_text + p.safe_text).lower() for p in pairs)
        assert "search: python" in tui_screen_text(app)
        assert app.errors == []


# -- 4: screens never show stale data --------------------------------------------------------------
@tui_async
async def test_screens_refresh_after_outside_writes_and_recomputes(hstore):
    n = hstore.curation.count_prompts()
    app = make(hstore, "prompts")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        assert f"{n} prompts" in tui_screen_text(app)
        # another writer (a second terminal): here the same store, outside the app
        unsafe = hstore.curation.list_prompts(label="unsafe", limit=2)
        for i, u in enumerate(unsafe):
            hstore.curation.create_pair(u.id, safe_text=f"How do I write a haiku about autumn leaves, number {i}?")
        await pilot.pause(2.6)  # the app polls the store's revision every 2 s
        await tui_settle(pilot)
        assert f"{n + 2} prompts" in tui_screen_text(app)

        await press(pilot, "1")
        assert "no CP run for this encoder yet" in tui_screen_text(app)
        await press(pilot, "5", "e", "r", "1")  # embed and recompute elsewhere: the taxonomy shows CP on return
        text = tui_screen_text(app)
        assert "no CP run for this encoder yet" not in text and "CP@10 under minilm" in text
        assert app.errors == []


# -- 3: Suspects says it is loading, and a fixed row leaves at once -----------------------------------
@tui_async
async def test_suspects_show_loading_and_drop_a_fixed_row_at_once(hstore):
    from taxonomy_store.tui.screens.pairs import NeighbourTable
    from taxonomy_store.tui.screens.suspects import SuspectsScreen, SuspectTable

    seen: list[str] = []
    app = make(hstore, "suspects")
    original = SuspectsScreen._loading

    def spy(self, what):
        if what:
            seen.append(what)
        original(self, what)

    SuspectsScreen._loading = spy
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            await tui_settle(pilot)
            assert seen[0] == "finding suspects by label under minilm…"
            assert any("out-of-sample label probabilities" in w for w in seen)
            screen = app.screen
            table = screen.query_one(SuspectTable)
            assert not table.loading and screen.loading_what is None
            count = len(screen.suspects)
            s = screen.current()
            assert f"{count} suspects" in tui_screen_text(app)
            nn = screen.query_one(NeighbourTable)
            assert nn.border_title == f"nearest stored prompts to #{s.prompt.id}"
            # r: the row and the count change before the reload ends (the reload is held back here)
            release = __import__("threading").Event()
            load = hstore.review.label_issues
            hstore.review.label_issues = lambda *a, **k: (release.wait(10), load(*a, **k))[1]
            await pilot.press("r")
            for _ in range(100):
                await pilot.pause(0.02)
                if s.prompt.id not in screen.suspects:
                    break
            assert s.prompt.id not in screen.suspects
            status = str(screen.query_one("#suspects-status").render())
            assert f"{count - 1} suspects" in status and screen.loading_what and status.startswith(screen.loading_what)
            current = screen.current()
            assert current is not None and nn.border_title.startswith(f"nearest stored prompts to #{current.prompt.id}")
            release.set()
            await tui_settle(pilot)
            assert screen.loading_what is None and app.errors == []
    finally:
        SuspectsScreen._loading = original


# -- 5: the edit modal shows the category picked, the picker filters, escape asks ---------------------
@tui_async
async def test_edit_modal_shows_the_pick_filters_the_tree_and_asks_before_discarding(hstore):
    from textual.widgets import Static

    from taxonomy_store.tui.screens.modals import CategoryPicker, ConfirmModal, EditPromptModal
    from taxonomy_store.tui.widgets import CategoryTree, PromptTable

    app = make(hstore, "prompts")
    async with app.run_test(size=(80, 24)) as pilot:
        await tui_settle(pilot)
        target = app.screen.query_one(PromptTable).current()
        await press(pilot, "e", "ctrl+t")
        picker = app.screen
        assert isinstance(picker, CategoryPicker)
        leaf = next(n for n in picker.tax_tree.walk() if not n.children and n.code != target.category_code
                    and len(n.code) > 6)
        await press(pilot, *leaf.code)
        tree = picker.query_one(CategoryTree)
        assert tree.cursor_node.data == leaf.code
        shown = [tree.get_node_at_line(i).data for i in range(tree.last_line + 1)]
        assert leaf.code in shown and len(shown) < len(list(picker.tax_tree.walk()))
        assert f"filter: {leaf.code}" in tui_screen_text(app)
        await press(pilot, "enter")
        modal = app.screen
        assert isinstance(modal, EditPromptModal)
        line = modal.query_one("#edit-category-name", Static).render()
        assert f"category: {leaf.code}" in str(line) and f"(was {target.category_code or 'none'})" in str(line)
        await press(pilot, "escape")  # a changed edit: asks first
        assert isinstance(app.screen, ConfirmModal) and "Discard the changes" in tui_screen_text(app)
        await press(pilot, "n")
        assert app.screen is modal and modal.category == leaf.code  # nothing lost
        await press(pilot, "ctrl+s")
        assert hstore.curation.get_prompt(target.id).category_code == leaf.code
        await press(pilot, "e", "escape")  # unchanged: escape leaves at once
        assert not isinstance(app.screen, (EditPromptModal, ConfirmModal))
        assert app.errors == []


# -- 8: a text-edit toast shows the change, and a real ESC apart from a typed \x1b ----------------------
def test_text_edit_toasts_show_where_the_texts_differ():
    from types import SimpleNamespace

    from taxonomy_store.tui.edits import prompt_change

    old = SimpleNamespace(id=7, text="How can I kill a Python process that hangs forever on my Linux server at night?",
                          label="safe", category_code=None)
    toast = prompt_change(old, {"text": old.text.replace("at night", "in the morning")})
    assert toast == "prompt #7 text “…inux server at night?” → “…inux server in the morning?”"
    esc = SimpleNamespace(id=8, text="say \x1b[31mred", label="safe", category_code=None)
    toast = prompt_change(esc, {"text": "say \\x1b[31mred"})  # the curator typed the four characters
    assert toast == "prompt #8 text “say ␛[31mred” → “say \\x1b[31mred”"


@tui_async
async def test_text_edit_toast_in_the_app(hstore):
    from textual.widgets import TextArea

    from taxonomy_store.tui.widgets import PromptTable

    app = make(hstore, "prompts")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        target = app.screen.query_one(PromptTable).current()
        await press(pilot, "e")
        area = app.screen.query_one("#edit-text", TextArea)
        area.text = target.text + " Asked for a school essay."
        await press(pilot, "ctrl+s")
        assert hstore.curation.get_prompt(target.id).text.endswith("Asked for a school essay.")
        toast = toasts(app)[-1]
        before, after = toast.split("” → “")
        assert "Asked for a school essay." in after and "Asked" not in before
        assert app.errors == []


# -- 12: several suspects fixed in one edit, undone by one key ----------------------------------------
@tui_async
async def test_bulk_relabel_of_marked_suspects_is_one_edit_and_one_undo(hstore):
    from taxonomy_store.tui.screens.modals import ConfirmModal
    from taxonomy_store.tui.screens.suspects import SuspectTable

    app = make(hstore, "suspects")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        screen = app.screen
        first = screen.current()
        await press(pilot, "space")  # marks it, moves down
        second = screen.current()
        await press(pilot, "space")
        assert screen.query_one(SuspectTable).marked == {first.prompt.id, second.prompt.id}
        assert "2 marked" in tui_screen_text(app)
        rev = hstore.data_revision()
        await press(pilot, "r")  # asks first, naming the count
        assert isinstance(app.screen, ConfirmModal) and "2 marked prompts" in tui_screen_text(app)
        await press(pilot, "n")  # declined: nothing written, the marks stay
        assert hstore.data_revision() == rev and screen.query_one(SuspectTable).marked == {first.prompt.id, second.prompt.id}
        await press(pilot, "r", "y")
        for s in (first, second):
            assert hstore.curation.get_prompt(s.prompt.id).label == s.suggested_label != s.prompt.label
        assert len(app.edits) == 1
        assert app.edits[-1].what.startswith("2 prompts: #")
        assert first.prompt.id not in screen.suspects and second.prompt.id not in screen.suspects
        await press(pilot, "u")  # one key: both back
        for s in (first, second):
            assert hstore.curation.get_prompt(s.prompt.id).label == s.prompt.label
        assert app.edits[-1].undone
        # `/` filters the list by text
        word = screen.current().prompt.text.split()[-1].strip("?.!")
        await press(pilot, "slash", *word, "enter")
        assert screen.suspects and all(word.lower() in s.prompt.text.lower() for s in screen.suspects.values())
        assert app.errors == []


# -- 11: no suggestion that every neighbour shown contradicts ---------------------------------------------
def test_label_suggestions_are_backed_by_a_neighbour_shown(hstore):
    issues = hstore.review.label_issues("minilm", limit=100)
    assert issues
    for issue in issues:
        near = hstore.review.neighbours(issue.prompt.id, encoder="minilm", k=5)
        assert any(n.label == issue.suggested_label for n in near), issue.prompt.id


# -- 9: one name per category across screens, and the scorer that decided ----------------------------------
@tui_async
async def test_metrics_names_categories_by_code_as_query_does(hstore):
    from textual.widgets import DataTable

    hstore.metric_runs.compute_all(encoders=["minilm"], taxonomy="do-not-answer")
    app = make(hstore, "metrics", taxonomy="do-not-answer")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        cp = app.screen.query_one("#metrics-cp", DataTable)
        codes = {n.code for n in hstore.taxonomies.tree("do-not-answer").walk()}
        shown = [cp.get_row_at(i)[0].plain for i in range(cp.row_count)]
        assert shown and all(name in codes for name in shown)
        assert app.errors == []


# -- 12: import, export, calibrate and evaluate from the command palette ------------------------------------
@tui_async
async def test_palette_exports_and_imports(hstore, tmp_path):
    from textual.widgets import Input

    from taxonomy_store.tui.screens.modals import TextInputModal

    out = tmp_path / "prompts.csv"
    n = hstore.curation.count_prompts()
    app = make(hstore, "prompts")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        await press(pilot, "ctrl+p", *"Export prompts")
        await press(pilot, "enter")
        assert isinstance(app.screen, TextInputModal)
        app.screen.query_one(Input).value = str(out)
        await press(pilot, "enter")
        assert out.is_file() and len(out.read_text(encoding="utf-8").splitlines()) > n  # header + rows (some multi-line)
        assert any(t.startswith(f"exported {n} prompts to {out}") for t in toasts(app))

        new = tmp_path / "new.csv"
        new.write_text("prompt,label\nHow do I descale a kettle with vinegar?,safe\n", encoding="utf-8")
        await press(pilot, "ctrl+p", *"Import a data file")
        await press(pilot, "enter")
        app.screen.query_one(Input).value = str(new)
        await press(pilot, "enter")
        assert hstore.curation.count_prompts() == n + 1
        assert any(t.startswith("imported ") and "1 prompts added" in t for t in toasts(app))
        titles = [t for t, _h, _c in __import__("taxonomy_store.tui.tasks", fromlist=["x"]).palette_tasks(app)]
        assert "Calibrate the guard" in titles and "Evaluate the guard…" in titles
        assert app.errors == []


# -- 12: any table sorts by a column --------------------------------------------------------------------------
@tui_async
async def test_o_sorts_the_table_by_the_next_column_and_keeps_the_cursor_on_its_row(hstore):
    from taxonomy_store.tui.widgets import PromptTable

    app = make(hstore, "prompts")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        table = app.screen.query_one(PromptTable)
        await press(pilot, "down", "down")
        on = table.current().id
        await press(pilot, "o", "o")  # id ascending, then descending
        ids = [int(table.get_row_at(i)[0].plain) for i in range(table.row_count)]
        assert ids == sorted(ids, reverse=True) and table.current().id == on
        assert "sorted by id ↓" in toasts(app)[-1]
        await press(pilot, "o")  # label, ascending
        labels = [table.get_row_at(i)[1].plain for i in range(table.row_count)]
        assert labels == sorted(labels) and table.current().id == on
        app.screen.refresh_data(keep_page=True)  # a reload keeps the order
        await tui_settle(pilot)
        assert [table.get_row_at(i)[1].plain for i in range(table.row_count)] == sorted(labels)
        assert app.errors == []


# -- 12: several prompts marked on the Prompts screen, one edit, one undo ---------------------------------------
def _batches_of(store, prompt_ids):
    """The curation audit batches that changed these prompts."""
    from sqlalchemy import select

    from taxonomy_store.db.models import AuditEntry

    with store.session() as s:
        return set(s.scalars(select(AuditEntry.batch_id).where(
            AuditEntry.entity == "prompt", AuditEntry.entity_id.in_(prompt_ids), AuditEntry.reason.like("curation:%"))))


@tui_async
async def test_marked_prompts_survive_paging_and_sorting_and_are_relabelled_in_one_batch_undone_by_one_u(hstore):
    from textual.widgets import Select

    from taxonomy_store.tui.screens.modals import BulkEditModal, ConfirmModal
    from taxonomy_store.tui.widgets import PromptTable

    app = make(hstore, "prompts")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        screen, table = app.screen, app.screen.query_one(PromptTable)
        first = table.current()
        await press(pilot, "space")  # marks it, moves down
        await press(pilot, "down")
        second = table.current()
        await press(pilot, "space")
        assert table.marked == {first.id, second.id}
        assert "2 marked" in tui_screen_text(app) and f"●{first.id}" in tui_screen_text(app)
        # marks are kept by prompt id: another page, a sort and a filter do not move or drop them
        await press(pilot, "right_square_bracket")
        assert first.id not in table.prompts and table.marked == {first.id, second.id}
        await press(pilot, "left_square_bracket", "o", "o")  # back, then sorted by id descending
        assert table.marked == {first.id, second.id}
        assert {table.get_row_at(table.get_row_index(str(i)))[0].plain for i in (first.id, second.id)} == \
            {f"●{first.id}", f"●{second.id}"}
        await press(pilot, "l")  # a label filter
        assert table.marked == {first.id, second.id}
        await press(pilot, "escape")
        before = _batches_of(hstore, [first.id, second.id])
        new_label = "safe" if first.label == second.label == "unsafe" else "unsafe"
        await press(pilot, "e")  # with marks, `e` edits all of them
        assert isinstance(app.screen, BulkEditModal)
        app.screen.query_one("#edit-label", Select).value = new_label
        await press(pilot, "ctrl+s")
        assert isinstance(app.screen, ConfirmModal)  # asked first, with the count
        assert "2 marked prompts" in tui_screen_text(app) and f"label → {new_label}" in tui_screen_text(app)
        await press(pilot, "y")
        assert app.screen is screen
        for p in (first, second):
            assert hstore.curation.get_prompt(p.id).label == new_label
        batches = _batches_of(hstore, [first.id, second.id]) - before
        assert len(batches) == 1  # both changes in ONE audit batch
        assert len(app.edits) == 1 and app.edits[-1].what.startswith("2 prompts: #") and table.marked == set()
        await press(pilot, "u")  # one key: both back
        for p in (first, second):
            assert hstore.curation.get_prompt(p.id).label == p.label
        assert app.edits[-1].undone
        assert app.errors == []


@tui_async
async def test_bulk_edit_writes_nothing_when_cancelled_or_declined_and_m_clears_the_marks(hstore):
    from textual.widgets import Select

    from taxonomy_store.tui.screens.modals import ConfirmModal
    from taxonomy_store.tui.widgets import PromptTable

    app = make(hstore, "prompts")
    async with app.run_test(size=(80, 24)) as pilot:
        await tui_settle(pilot)
        table = app.screen.query_one(PromptTable)
        first = table.current()
        await press(pilot, "space", "space")
        marked = set(table.marked)
        assert len(marked) == 2 and first.id in marked
        revision = hstore.data_revision()
        await press(pilot, "e")
        app.screen.query_one("#edit-label", Select).value = "unlabeled"
        await press(pilot, "ctrl+s")
        assert isinstance(app.screen, ConfirmModal)
        await press(pilot, "n")  # declined: nothing written, the marks stay
        assert hstore.data_revision() == revision and table.marked == marked
        await press(pilot, "e", "escape")  # nothing picked: Escape leaves at once
        assert hstore.data_revision() == revision and app.edits == []
        labels = {hstore.curation.get_prompt(i).label for i in marked}
        assert len(labels) == 1
        await press(pilot, "e")
        app.screen.query_one("#edit-label", Select).value = labels.pop()  # the label both have already
        await press(pilot, "ctrl+s", "y")
        assert hstore.data_revision() == revision and app.edits == [] and table.marked == set()
        assert "no marked prompt needed the change" in toasts(app) and "2 marked already so" in toasts(app)
        await press(pilot, "space", "space")
        await press(pilot, "M")
        assert table.marked == set() and "2 marked" not in tui_screen_text(app)
        assert ("space", "Mark") in __import__("taxonomy_store.tui.app", fromlist=["x"]).binding_rows(app.screen.BINDINGS)
        assert app.errors == []


# -- responsive at scale: the Prompts table shows its first page before the count is in ------------------------
@tui_async
async def test_prompts_first_page_shows_while_the_count_is_still_running(hstore, monkeypatch):
    import threading

    from taxonomy_store.tui.widgets import PromptTable

    release = threading.Event()
    count = hstore.curation.count_prompts

    def slow_count(**filters):  # a count that takes as long as the test says (seconds on 100,000 prompts)
        release.wait(30)
        return count(**filters)

    monkeypatch.setattr(hstore.curation, "count_prompts", slow_count)
    app = make(hstore, "prompts")
    async with app.run_test(size=(160, 48)) as pilot:
        table = app.screen.query_one(PromptTable)
        for _ in range(200):
            await pilot.pause(0.05)
            if table.row_count:
                break
        assert table.row_count == 200 and not release.is_set()
        assert "counting prompts…" in tui_screen_text(app)
        release.set()
        await tui_settle(pilot)
        assert f"{count()} prompts (1–200)" in tui_screen_text(app)
        assert app.errors == []


# -- 12: calibrate and evaluate from the command palette show the library's figures ----------------------------
def _reference_store(hashed_store_dir, tmp_path):
    """A second copy of the same store, for the library's own answer."""
    from taxonomy_store.store import Store

    shutil.copytree(hashed_store_dir, tmp_path / "reference")
    s = Store.open(tmp_path / "reference")
    use_hashing_encoder(s)
    return s


async def _palette(pilot, title: str) -> None:
    await press(pilot, "ctrl+p", *title)
    await press(pilot, "enter")
    await tui_settle(pilot)


@tui_async
async def test_palette_calibrate_shows_the_calibration_the_library_computes(hstore, hashed_store_dir, tmp_path):
    from taxonomy_store.tui.tasks import calibration_line

    assert hstore.guard.calibration("minilm") is None
    app = make(hstore, "prompts")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        await _palette(pilot, "Calibrate the guard")
        reference = _reference_store(hashed_store_dir, tmp_path)
        try:
            expected = reference.guard.calibrate("minilm")
        finally:
            reference.close()
        stored = hstore.guard.calibration("minilm")  # the TUI's run was stored, with the same figures
        assert stored is not None and (stored.scorer, stored.threshold, stored.f1) == (expected.scorer, expected.threshold, expected.f1)
        shown = toasts(app)[-1]
        assert shown == calibration_line("minilm", expected)
        assert f"threshold {expected.threshold:.3f}" in shown and f"grouped-CV AUROC {expected.auroc:.3f}" in shown
        assert app.errors == []


@tui_async
async def test_palette_evaluate_shows_each_held_out_datasets_figures_as_the_library_does(hstore, hashed_store_dir, tmp_path):
    from textual.widgets import Input

    from taxonomy_store.errors import NotEnoughLabels
    from taxonomy_store.tui.screens.modals import ErrorModal, TextInputModal
    from taxonomy_store.tui.tasks import evaluation_line

    app = make(hstore, "metrics")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        await _palette(pilot, "Evaluate the guard")
        assert isinstance(app.screen, TextInputModal) and app.screen.query_one(Input).value == "each"
        await press(pilot, "enter")  # every labeled dataset in turn: without xstest_aug too few safe prompts are left
        assert isinstance(app.screen, ErrorModal) and isinstance(app.errors[-1], NotEnoughLabels)
        assert "without xstest_aug" in tui_screen_text(app)
        await press(pilot, "escape")
        app.errors.clear()
        await _palette(pilot, "Evaluate the guard")
        app.screen.query_one(Input).value = "do_not_answer"
        await press(pilot, "enter")
        reference = _reference_store(hashed_store_dir, tmp_path)
        try:
            expected = reference.evaluation.evaluate(encoder="minilm", holdout=["do_not_answer"])
        finally:
            reference.close()
        shown = toasts(app)[-1]
        assert shown == evaluation_line("minilm", expected)
        recall = expected.details["splits"][0]["datasets"]["do_not_answer"]["recall"]  # all unsafe: no AUROC, a recall
        assert expected.primary_name == "heldout_right_macro" and expected.primary_value == pytest.approx(recall)
        assert shown == (f"evaluated the guard under minilm, held out: do_not_answer: heldout_right_macro = "
                         f"{expected.primary_value:.3f}; do_not_answer: recall {recall:.3f}")
        assert app.errors == []


@tui_async
async def test_palette_calibrate_on_real_minilm_vectors(tui_demo_store, tui_demo_store_dir, tmp_path):
    """The same, on our demo set embedded with the real minilm (the `model` tier)."""
    from conftest import open_store_copy

    from taxonomy_store.tui.tasks import calibration_line

    app = make(tui_demo_store, "prompts", taxonomy="do-not-answer")
    async with app.run_test(size=(80, 24)) as pilot:
        await tui_settle(pilot)
        await _palette(pilot, "Calibrate the guard")
        reference = open_store_copy(tui_demo_store_dir, tmp_path / "reference")
        expected = next(reference).guard.calibrate("minilm")
        next(reference, None)  # closes it
        assert toasts(app)[-1] == calibration_line("minilm", expected)
        assert tui_demo_store.guard.calibration("minilm").threshold == expected.threshold
        assert app.errors == []


@tui_async
async def test_marked_prompts_recategorised_in_one_batch_keep_their_labels(hstore):
    from taxonomy_store.tui.screens.modals import BulkEditModal, ConfirmModal
    from taxonomy_store.tui.widgets import PromptTable

    app = make(hstore, "prompts", taxonomy="do-not-answer")
    async with app.run_test(size=(160, 48)) as pilot:
        await tui_settle(pilot)
        table = app.screen.query_one(PromptTable)
        first = table.current()
        await press(pilot, "space", "space")
        second = hstore.curation.get_prompt(next(i for i in table.marked if i != first.id))
        leaf = next(n.code for n in hstore.taxonomies.tree("do-not-answer").walk()
                    if not n.children and n.code not in (first.category_code, second.category_code))
        await press(pilot, "e")
        modal = app.screen
        assert isinstance(modal, BulkEditModal)
        await press(pilot, "ctrl+t", *leaf, "enter")  # the category picker, filtered by typing
        assert modal.category == leaf and app.screen is modal
        await press(pilot, "ctrl+s")
        assert isinstance(app.screen, ConfirmModal) and f"category → {leaf}" in tui_screen_text(app)
        await press(pilot, "y")
        for p in (first, second):
            now = hstore.curation.get_prompt(p.id)
            assert now.category_code == leaf and now.label == p.label  # the label left as it was
        assert len(app.edits) == 1
        await press(pilot, "u")
        assert [hstore.curation.get_prompt(p.id).category_code for p in (first, second)] == \
            [first.category_code, second.category_code]
        assert app.errors == []
