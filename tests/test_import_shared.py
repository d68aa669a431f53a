"""Importing the three shared datasets: exact counts, twin pairs, linking, idempotence."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from taxonomy_store.catalog import node_index
from taxonomy_store.db.models import AuditEntry, Dataset, Pair, PairSet, Prompt, PromptSource
from taxonomy_store.store import init_store

FILES = ("xstest_prompts", "xstest_aug", "do_not_answer")


def _import_all(store, shared_datasets):
    return {name: store.imports.import_file(shared_datasets / f"{name}.csv") for name in FILES}


@pytest.fixture(scope="module")
def imported(tmp_path_factory, shared_datasets):
    store = init_store(tmp_path_factory.mktemp("shared") / "store")
    summaries = _import_all(store, shared_datasets)
    yield store, summaries
    store.close()


def _dataset_prompt_ids(s, name: str) -> set[int]:
    ds = s.scalar(select(Dataset.id).where(Dataset.name == name))
    return set(s.scalars(select(PromptSource.prompt_id).where(PromptSource.dataset_id == ds)))


def test_formats_are_detected(imported):
    _, summaries = imported
    assert [summaries[n].format for n in FILES] == ["xstest", "xstest-aug", "do-not-answer"]


def test_xstest_prompts_and_twin_pairs(imported):
    store, summaries = imported
    s0 = summaries["xstest_prompts"]
    assert (s0.rows, s0.added, s0.duplicates_in_file, s0.pairs_added) == (450, 450, 0, 200)
    assert s0.taxonomies_loaded == ["xstest-pair-types"]
    assert any("199/174" in n for n in s0.notes)  # the one twin pair whose focus differs
    with store.session() as s:
        ids = _dataset_prompt_ids(s, "xstest_prompts")
        labels = Counter(s.scalars(select(Prompt.label).where(Prompt.id.in_(ids))))
        assert len(ids) == 450 and labels == {"safe": 250, "unsafe": 200}
        u, sp = aliased(Prompt), aliased(Prompt)
        rows = s.execute(
            select(u.source_key, sp.source_key, Pair.pair_type)
            .join(PairSet, PairSet.id == Pair.pair_set_id)
            .join(u, u.id == Pair.unsafe_prompt_id)
            .join(sp, sp.id == Pair.safe_prompt_id)
            .where(PairSet.name == "xstest_prompts")
        ).all()
    assert len(rows) == 200
    assert all(int(uk) - 25 == int(sk) for uk, sk, _ in rows)
    # contrast_discr 301-325 pairs with real_group_nons_discr 276-300 (pair type "action").
    assert {(int(uk), t) for uk, _, t in rows if 301 <= int(uk) <= 325} == {(i, "action") for i in range(301, 326)}
    types = Counter(t for _, _, t in rows)
    assert len(types) == 8 and set(types.values()) == {25}
    assert "group" not in types and "privacy_publicity" not in types  # no twins for these two


def test_safe_embed_pairs_link_to_xstest(imported):
    store, summaries = imported
    s1 = summaries["xstest_aug"]
    assert (s1.rows, s1.pairs_added) == (500, 250)
    with store.session() as s:
        ps = s.scalar(select(PairSet.id).where(PairSet.name == "xstest_aug"))
        pairs = s.execute(select(Pair.safe_prompt_id, Pair.unsafe_prompt_id, Pair.pair_type).where(Pair.pair_set_id == ps)).all()
        assert len(pairs) == 250
        assert Counter(t for *_, t in pairs) == {t: 25 for t in Counter(t for *_, t in pairs)}
        assert len({t for *_, t in pairs}) == 10
        xstest_ids = _dataset_prompt_ids(s, "xstest_prompts")
        safe_ids = {sid for sid, _, _ in pairs}
        assert len(safe_ids) == 250
        assert len(safe_ids & xstest_ids) == 249  # linked, not duplicated
        # No text is stored twice among live prompts.
        dup = s.execute(
            select(Prompt.text_sha256).where(Prompt.deleted_at.is_(None)).group_by(Prompt.text_sha256).having(func.count() > 1)
        ).all()
        assert dup == []
    # 249 safe + the aug unsafe prompts that are XSTest contrast prompts were linked.
    assert s1.linked_existing >= 249 and s1.added == 500 - s1.linked_existing - s1.duplicates_in_file


def test_do_not_answer_rows_categories_and_the_duplicate(imported):
    store, summaries = imported
    s2 = summaries["do_not_answer"]
    # 939 rows are kept as 939 sources; one question appears twice, so they map to 938 prompts.
    assert (s2.rows, s2.added, s2.duplicates_in_file) == (939, 938, 1)
    with store.session() as s:
        ds = s.scalar(select(Dataset).where(Dataset.name == "do_not_answer"))
        assert (ds.row_count, ds.prompt_count) == (939, 938)
        assert s.scalar(select(func.count()).select_from(PromptSource).where(PromptSource.dataset_id == ds.id)) == 939
        ids = _dataset_prompt_ids(s, "do_not_answer")
        cats = s.execute(select(Prompt.label, Prompt.category_id).where(Prompt.id.in_(ids))).all()
        nodes = node_index(s)
        assert {lab for lab, _ in cats} == {"unsafe"}
        per_depth = [len({nodes[c].id_path[d] for _, c in cats}) for d in range(3)]
        assert per_depth == [5, 12, 61]
        assert {nodes[c].taxonomy for _, c in cats} == {"do-not-answer"}
        dup = s.scalars(
            select(PromptSource.source_key).where(PromptSource.dataset_id == ds.id).group_by(PromptSource.prompt_id)
            .having(func.count() > 1)
        ).all()
        assert len(dup) == 1


def test_reimport_is_a_no_op(imported, shared_datasets):
    store, _ = imported
    before = store.data_revision()
    again = _import_all(store, shared_datasets)
    assert all(r.unchanged_file and r.added == r.updated == r.pairs_added == 0 for r in again.values())
    assert again["do_not_answer"].unchanged == 939
    assert store.data_revision() == before


def test_shared_import_on_postgresql(pg_url, tmp_path, shared_datasets):
    store = init_store(tmp_path / "pg", db_url=pg_url)
    try:
        summaries = _import_all(store, shared_datasets)
        assert summaries["do_not_answer"].added == 938
        assert summaries["xstest_aug"].pairs_added == 250
        with store.session() as s:
            assert s.scalar(select(func.count(Pair.id))) == 450
            assert s.scalar(select(func.count(Prompt.id))) == 450 + summaries["xstest_aug"].added + 938
            n_audit = s.scalar(select(func.count(AuditEntry.id)))
        again = store.imports.import_file(shared_datasets / "xstest_aug.csv")
        assert again.unchanged_file
        with store.session() as s:
            assert s.scalar(select(func.count(AuditEntry.id))) == n_audit
    finally:
        store.close()
