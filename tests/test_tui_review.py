"""store.review (the TUI's read-only views) checked against brute force on the shared-data store."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tui_shared_store_dir):
    from taxonomy_store.store import Store

    s = Store.open(tui_shared_store_dir)
    yield s
    s.close()


@pytest.fixture(scope="module")
def brute(store):
    vs = store.embeddings.load_vectors("minilm")
    prompts = {p.id: p for p in store.curation.list_prompts()}
    return vs, prompts


def test_suspects_by_label_match_brute_force(store, brute):
    vs, prompts = brute
    k = 10
    suspects = store.review.suspects("minilm", by="label", taxonomy="xstest-pair-types", k=k, limit=30)
    assert len(suspects) == 30
    assert [s.purity for s in suspects] == sorted(s.purity for s in suspects)
    labeled = np.array([prompts[int(i)].label in ("safe", "unsafe") for i in vs.prompt_ids])
    ids, x = vs.prompt_ids[labeled], vs.vectors[labeled]
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    row = {int(i): n for n, i in enumerate(ids)}
    for s in suspects:
        nn = np.argsort(-sims[row[s.prompt.id]], kind="stable")[:k]
        labels = [prompts[int(ids[j])].label for j in nn]
        assert s.purity == pytest.approx(sum(lbl == s.prompt.label for lbl in labels) / k)
        assert s.suggested_label == Counter(labels).most_common(1)[0][0] != s.prompt.label
        assert s.purity <= 0.5


def test_suspects_by_category_suggest_a_neighbour_category(store):
    suspects = store.review.suspects("minilm", by="category", taxonomy="xstest-pair-types", limit=20)
    assert suspects
    for s in suspects:
        neighbour_cats = Counter(store.curation.get_prompt(pid).category_code for pid, _ in s.neighbours)
        assert s.suggested_category == neighbour_cats.most_common(1)[0][0]
        assert s.purity == pytest.approx(neighbour_cats[s.prompt.category_code] / len(s.neighbours))


def test_neighbours_and_pair_similarity_match_brute_force(store, brute):
    vs, _ = brute
    pair = store.curation.list_pairs()[0]
    got = store.review.neighbours(pair.unsafe_prompt_id, encoder="minilm", k=5)
    q = vs.take([pair.unsafe_prompt_id])[0]
    sims = vs.vectors @ q
    order = [int(vs.prompt_ids[j]) for j in np.argsort(-sims, kind="stable") if int(vs.prompt_ids[j]) != pair.unsafe_prompt_id][:5]
    assert pair.unsafe_prompt_id not in [n.prompt_id for n in got]
    assert [n.prompt_id for n in got] == order  # exact: the neighbour service, not an approximate index
    assert [n.similarity for n in got] == pytest.approx([float(sims[vs.rows([p])[0]]) for p in order], abs=1e-6)

    sim = store.review.pair_similarities(pair.unsafe_prompt_id, pair.safe_prompt_id)
    expected = float(vs.take([pair.unsafe_prompt_id])[0] @ vs.take([pair.safe_prompt_id])[0])
    assert sim == {"minilm": pytest.approx(expected, abs=1e-6)}
