"""The import planner's rules, one at a time, on plain in-memory rows and store state (no database)."""

from __future__ import annotations

import pytest

from taxonomy_store.errors import InputFileError
from taxonomy_store.transfer.import_plan import Conflict, Planner, RowFacts, StoredState, plan_import, plan_pairs
from taxonomy_store.importers import PairRecord, PromptRecord
from taxonomy_store.text import text_sha256

DS = 1  # the import's dataset id


def rec(key: str, text: str, label: str = "safe", row: int | None = None, **kw) -> PromptRecord:
    return PromptRecord(key=key, text=text, label=label, row=row or int(key.strip("k") or 0) + 2, text_column="text",
                        label_column="label", **kw)


def facts(records, *, categories=None, datasets=None) -> RowFacts:
    return RowFacts(
        hashes=[text_sha256(r.text) for r in records],
        datasets=datasets or [DS] * len(records),
        categories=categories or [None] * len(records),
        row_shas=[f"{r.key}|{r.text}|{r.label}" for r in records],
    )


def prompt(pid: int, text: str, label: str = "safe", category_id=None, revision: int = 1) -> dict:
    return dict(id=pid, text=text, text_sha256=text_sha256(text), label=label, category_id=category_id, revision=revision)


def stored(prompts=(), sources=None, counts=None) -> StoredState:
    """A store holding `prompts` (live) and `sources` {(dataset, key): (source id, prompt id, row sha)}."""
    calls: list[int] = []

    def count_sources(pid: int) -> int:
        calls.append(pid)
        return (counts or {}).get(pid, 1)

    state = StoredState(
        sources=dict(sources or {}), live={p["text_sha256"]: p for p in prompts}, by_id={p["id"]: p for p in prompts},
        count_sources=count_sources,
    )
    state.calls = calls  # type: ignore[attr-defined]
    return state


def test_new_rows_become_prompts_with_their_own_source():
    rows = [rec("k0", "How do I bake bread?"), rec("k1", "How do I pick a lock?", "unsafe")]
    plan = plan_import(rows, facts(rows), stored())
    assert [(p["text"], p["label"], p["source_key"], p["dataset_id"]) for p in plan.inserts] == [
        ("How do I bake bread?", "safe", "k0", DS), ("How do I pick a lock?", "unsafe", "k1", DS)]
    assert [(link.key, link.prompt) for link in plan.links] == [("k0", ("new", 0)), ("k1", ("new", 1))]
    assert (plan.added, plan.updated, plan.unchanged, plan.linked_existing) == (2, 0, 0, 0)
    assert plan.key_refs == {"k0": ("new", 0), "k1": ("new", 1)} and not plan.conflicts


def test_same_text_twice_in_a_file_is_one_prompt_with_two_sources():
    rows = [rec("k0", "Kill a process", "unlabeled"), rec("k1", "Kill  a process", "safe")]
    plan = plan_import(rows, facts(rows), stored())
    assert len(plan.inserts) == 1 and plan.inserts[0]["label"] == "safe"  # the unlabeled first row takes the label
    assert [(link.key, link.prompt) for link in plan.links] == [("k0", ("new", 0)), ("k1", ("new", 0))]
    assert (plan.added, plan.duplicates_in_file) == (1, 1)


def test_same_text_with_opposite_labels_in_a_file_is_a_conflict():
    rows = [rec("k0", "Same words", "safe"), rec("k1", "Same words", "unsafe")]
    plan = plan_import(rows, facts(rows), stored())
    assert plan.conflicts == [Conflict(row=3, column="label", label="unsafe", other_label="safe", where="row 2 of this file")]
    err = plan.conflicts[0].error("f.csv")
    assert err.message == "f.csv, row 3, column 'label': label conflict: this text is unsafe here but safe in row 2 of this file"
    assert err.hint.startswith("fix the label in the file")


def test_text_already_stored_is_linked_not_duplicated():
    old = prompt(7, "How do I bake bread?", "unlabeled")
    rows = [rec("k0", "How do I bake bread?", "safe")]
    plan = plan_import(rows, facts(rows, categories=[42]), stored([old]))
    assert plan.inserts == [] and plan.linked_existing == 1
    assert [(link.dataset, link.key, link.prompt) for link in plan.links] == [(DS, "k0", 7)]
    # unlabeled takes the row's label; a prompt without a category takes the row's
    assert plan.prompt_updates == {7: {"label": ("unlabeled", "safe"), "category_id": (None, 42)}}


def test_text_stored_with_the_opposite_label_is_a_conflict():
    rows = [rec("k0", "How do I pick a lock?", "safe")]
    plan = plan_import(rows, facts(rows), stored([prompt(7, "How do I pick a lock?", "unsafe")]))
    assert [(c.label, c.other_label, c.where) for c in plan.conflicts] == [("safe", "unsafe", "prompt 7")]
    assert plan.prompt_updates == {}


def test_tstore_export_sets_label_and_category_instead_of_linking():
    rows = [rec("k0", "How do I bake bread?", "unsafe", category_column="category")]
    plan = plan_import(rows, facts(rows, categories=[5]), stored([prompt(7, "How do I bake bread?", "safe", category_id=3)]),
                       match_by_text=True)
    assert plan.links == [] and plan.updated == 1
    assert plan.prompt_updates == {7: {"label": ("safe", "unsafe"), "category_id": (3, 5)}}


def test_unchanged_row_of_a_stored_source_is_left_alone():
    rows = [rec("k0", "How do I bake bread?")]
    f = facts(rows)
    plan = plan_import(rows, f, stored([prompt(7, "How do I bake bread?")], {(DS, "k0"): (70, 7, f.row_shas[0])}))
    assert (plan.unchanged, plan.updated) == (1, 0)
    assert plan.source_updates == [] and plan.prompt_updates == {} and plan.key_refs == {"k0": 7}


def test_edited_text_of_an_unshared_prompt_is_edited_in_place():
    state = stored([prompt(7, "How do I bake bread?")], {(DS, "k0"): (70, 7, "old")})
    rows = [rec("k0", "How do I bake rye bread?")]
    plan = plan_import(rows, facts(rows), state)
    new_hash = text_sha256("How do I bake rye bread?")
    assert plan.prompt_updates == {7: {"text": ("How do I bake bread?", "How do I bake rye bread?"),
                                       "text_sha256": (text_sha256("How do I bake bread?"), new_hash)}}
    assert [(u.source_id, u.old_row_sha256, u.prompt) for u in plan.source_updates] == [(70, "old", None)]
    assert state.live[new_hash]["id"] == 7 and text_sha256("How do I bake bread?") not in state.live
    assert plan.changes == ["row 2 (k0): text, text_sha256"] and plan.forks == [] and state.calls == [7]


def test_edited_text_of_a_shared_prompt_forks_a_new_prompt():
    state = stored([prompt(7, "How do I bake bread?")], {(DS, "k0"): (70, 7, "old")}, counts={7: 2})
    rows = [rec("k0", "How do I bake rye bread?")]
    plan = plan_import(rows, facts(rows), state)
    assert plan.forks == [0] and plan.inserts[0]["text"] == "How do I bake rye bread?"
    assert plan.inserts[0]["source_key"] == "k0"  # its own stored source moves to the fork: the key stays
    assert [(u.prompt, u.old_prompt) for u in plan.source_updates] == [(("new", 0), 7)]
    assert plan.prompt_updates == {} and (plan.added, plan.updated) == (1, 1)
    assert plan.changes == ["row 2 (k0): text (now a prompt of its own text)"]


def test_edited_text_that_is_already_stored_moves_the_source_there():
    state = stored([prompt(7, "How do I bake bread?"), prompt(8, "How do I pick a lock?", "unlabeled")],
                   {(DS, "k0"): (70, 7, "old")})
    rows = [rec("k0", "How do I pick a lock?", "unsafe")]
    plan = plan_import(rows, facts(rows, categories=[4]), state)
    assert [(u.prompt, u.old_prompt) for u in plan.source_updates] == [(8, 7)]
    assert plan.prompt_updates == {8: {"label": ("unlabeled", "unsafe"), "category_id": (None, 4)}}
    assert plan.inserts == [] and plan.key_refs == {"k0": 8} and state.calls == []


def test_edited_text_that_an_earlier_row_has_moves_the_source_to_that_row():
    state = stored([prompt(7, "Old words")], {(DS, "k1"): (71, 7, "old")})
    rows = [rec("k0", "New words"), rec("k1", "New words")]
    plan = plan_import(rows, facts(rows), state)
    assert [(u.source_id, u.prompt, u.old_prompt) for u in plan.source_updates] == [(71, ("new", 0), 7)]
    assert plan.duplicates_in_file == 1 and plan.key_refs == {"k0": ("new", 0), "k1": ("new", 0)}


def test_a_new_prompt_whose_key_another_stored_source_holds_gets_a_suffixed_key():
    planner = Planner([], facts([]), stored(sources={(DS, "k0"): (70, 7, "x")}))
    h = text_sha256("anything")
    assert planner.unique_key(DS, "k0", h) == "k0"  # a stored source of this row: moved, so the key stays
    planner.match_by_text = True
    assert planner.unique_key(DS, "k0", h) == f"k0#{h[:12]}"  # exports match by text: the key is taken
    assert planner.unique_key(2, "k9", h) == "k9" and planner.unique_key(2, "k9", h) == f"k9#{h[:12]}"


def test_change_keeps_the_value_from_before_the_import():
    state = stored([prompt(7, "Words", "unlabeled")])
    planner = Planner([], facts([]), state)
    planner.change(7, {"label": "safe"})
    planner.change(7, {"label": "unsafe", "category_id": None})
    assert planner.plan.prompt_updates == {7: {"label": ("unlabeled", "unsafe")}}
    assert state.by_id[7]["label"] == "unsafe"


def test_merge_label_rule():
    state = stored([prompt(1, "a", "unlabeled"), prompt(2, "b", "safe")])
    planner = Planner([], facts([]), state)
    planner.merge_label(rec("k0", "x", "unlabeled"), 2, "prompt 2")  # unlabeled never overrides
    planner.merge_label(rec("k0", "x", "safe"), 2, "prompt 2")  # agreement
    planner.merge_label(rec("k0", "x", "unsafe"), 1, "prompt 1")  # unlabeled takes the label
    assert planner.plan.prompt_updates == {1: {"label": ("unlabeled", "unsafe")}} and planner.plan.conflicts == []
    planner.merge_label(rec("k0", "x", "unsafe"), 2, "prompt 2")
    assert [(c.label, c.other_label) for c in planner.plan.conflicts] == [("unsafe", "safe")]


def test_sharing_is_asked_once_per_prompt():
    state = stored(counts={7: 3, 8: 1})
    planner = Planner([], facts([]), state)
    assert [planner.shared(7), planner.shared(7), planner.shared(8)] == [True, True, False]
    assert state.calls == [7, 8]


def test_export_rows_naming_a_new_dataset_keep_its_placeholder():
    rows = [rec("k0", "Fresh words", dataset="new_ds")]
    plan = plan_import(rows, facts(rows, datasets=[-1]), stored(), match_by_text=True)
    assert plan.inserts[0]["dataset_id"] == -1 and plan.links[0].dataset == -1


def test_progress_is_reported_per_5000_rows_and_at_the_end():
    rows = [rec(f"k{i}", f"text number {i}") for i in range(10_001)]
    seen = []
    plan_import(rows, facts(rows), stored(), progress=lambda stage, done, total: seen.append((stage, done, total)))
    assert seen == [("check", 0, 10_001), ("check", 5000, 10_001), ("check", 10_000, 10_001), ("check", 10_001, 10_001)]


# -- pairs ----------------------------------------------------------------------------------------
def pair(key, unsafe_key, safe_key, row=2, **kw) -> PairRecord:
    return PairRecord(key=key, unsafe_key=unsafe_key, safe_key=safe_key, row=row, **kw)


def stored_pair(pid, set_id, u, s, key, pair_type="homonyms", status="accepted", note=None) -> dict:
    return dict(id=pid, pair_set_id=set_id, unsafe_prompt_id=u, safe_prompt_id=s, pair_type=pair_type, source_key=key,
                status=status, note=note)


KEYS = {"u1": 1, "s1": 2, "u2": 3, "s2": 4}


def test_new_pairs_are_inserted_once_per_two_prompts():
    wanted = [(9, pair("p1", "u1", "s1", pair_type="homonyms")), (9, pair("p1b", "u1", "s1", pair_type="homonyms"))]
    plan = plan_pairs(wanted, KEYS, [], match_by_text=False, path="f.csv")
    assert plan.inserts == [dict(pair_set_id=9, unsafe_prompt_id=1, safe_prompt_id=2, pair_type="homonyms", source_key="p1",
                                 status="accepted", note=None)]
    assert (plan.updates, plan.unchanged) == ([], 1)


def test_a_stored_pair_is_matched_by_key_and_updated():
    stored_pairs = [stored_pair(50, 9, 1, 2, "p1")]
    wanted = [(9, pair("p1", "u2", "s1", pair_type="homonyms")), (9, pair("p2", "u1", "s2", pair_type="homonyms"))]
    plan = plan_pairs(wanted, KEYS, stored_pairs, match_by_text=False, path="f.csv")
    assert plan.updates == [(50, {"unsafe_prompt_id": 1}, {"unsafe_prompt_id": 3})]
    assert [(v["unsafe_prompt_id"], v["safe_prompt_id"]) for v in plan.inserts] == [(1, 4)]


def test_an_export_matches_pairs_by_prompts_and_sets_status_and_note():
    stored_pairs = [stored_pair(50, 9, 1, 2, "other-key", status="proposed")]
    wanted = [(9, pair("p1", "u1", "s1", pair_type="homonyms", status="rejected", note="not a twin"))]
    plan = plan_pairs(wanted, KEYS, stored_pairs, match_by_text=True, path="f.csv")
    assert plan.updates == [(50, {"status": "proposed", "note": None}, {"status": "rejected", "note": "not a twin"})]
    unchanged = plan_pairs([(9, pair("x", "u1", "s1", pair_type="homonyms"))], KEYS, stored_pairs, match_by_text=False, path="f.csv")
    assert (unchanged.updates, unchanged.inserts, unchanged.unchanged) == ([], [], 1)  # status is the curator's


def test_a_pair_of_one_prompt_with_itself_is_refused():
    with pytest.raises(InputFileError) as err:
        plan_pairs([(9, pair("p1", "u1", "s1", row=7))], {"u1": 1, "s1": 1}, [], match_by_text=False, path="f.csv")
    assert err.value.message == "f.csv, row 7: the unsafe and the safe side of this pair are the same text"
