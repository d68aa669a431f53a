"""The one exact neighbour service: exact filtered search, and every reader naming the same neighbours.

A store of 2,400 near-duplicate prompts (templates that differ by one word or a number),
embedded with a deterministic character-trigram encoder: near-duplicates are the hard case for
an approximate index, and the fake encoder maps a stored prompt's own text to its stored vector
bit for bit.
"""

from __future__ import annotations

import csv
import hashlib
import itertools

import numpy as np
import pytest

from taxonomy_store.metrics.detection import knn_scores
from taxonomy_store.neighbours.service import Filters, Neighbours

K = 10


class TrigramEncoder:
    """Deterministic stand-in for a sentence encoder: signed hashed character trigrams, L2-normalised."""

    def __init__(self, dimension: int):
        self.dimension = dimension

    def encode(self, texts, batch_size=None) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, text in enumerate(texts):
            t = f"  {text.lower()} "
            for j in range(len(t) - 2):
                h = int.from_bytes(hashlib.blake2b(t[j : j + 3].encode(), digest_size=8).digest(), "little")
                out[i, h % self.dimension] += 1.0 if (h >> 32) & 1 else -1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1.0, norms)

    def check_weights(self) -> None:
        pass


def _near_duplicates() -> list[dict[str, str]]:
    """Our own template prompts: groups that differ by one word or one number."""
    verbs = ["pick", "open", "break", "fix", "unlock", "clean"]
    things = ["a lock", "a car door", "a safe", "a window", "a laptop", "a phone", "a gate", "a drawer"]
    places = ["at home", "in a hotel", "at work", "in a school", "at night"]
    rows = []
    for n, (v, t, p, i) in enumerate(itertools.product(verbs, things, places, range(10))):
        label = "unsafe" if v in ("break", "unlock", "pick") and i % 3 else "safe"
        rows.append({"text": f"How do I {v} {t} {p}, case {i}?", "label": label})
    return rows


@pytest.fixture(scope="module")
def dup_store(tmp_path_factory):
    from taxonomy_store.store import init_store

    root = tmp_path_factory.mktemp("neighbours")
    path = root / "near_duplicates.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows(_near_duplicates())
    store = init_store(root / "store")
    info = store.encoders.get("minilm")
    store.live_encoders.install(info, TrigramEncoder(info.dimension or 384))
    store.imports.import_file(path, dataset="near_duplicates")
    store.embeddings.embed("minilm")
    yield store
    store.close()


def _texts(store):
    return {p.id: (p.text, p.label) for p in store.curation.list_prompts()}


def test_every_prompt_finds_itself_first_under_its_label_filter(dup_store):
    prompts = _texts(dup_store)
    assert len(prompts) == 2400
    for label in ("safe", "unsafe"):
        ids = [pid for pid, (_, lbl) in prompts.items() if lbl == label]
        results = dup_store.guard.query([prompts[i][0] for i in ids], k=3, label=label)
        firsts = [(r.neighbours[0].prompt_id, r.neighbours[0].similarity) for r in results]
        missed = [pid for pid, (got, _) in zip(ids, firsts) if got != pid]
        assert missed == []
        assert min(sim for _, sim in firsts) >= 0.9999
        assert all(n.label == label for r in results for n in r.neighbours)


def _nearest(pool, q, k, filters) -> list[tuple[int, float]]:
    """(prompt id, similarity) of the k nearest filtered pool prompts of the one query vector q."""
    idx, sims = Neighbours.nearest(pool, q, k, filters)
    return [(int(pool.prompt_ids[j]), float(s)) for j, s in zip(idx[0], sims[0]) if j >= 0]


def test_filters_are_exact_masks(dup_store):
    """A filtered search equals brute force over exactly the prompts the filter lets through."""
    pool = dup_store.neighbours.pool("minilm")
    text = "How do I unlock a car door in a hotel, case 4?"
    q = TrigramEncoder(pool.vectors.shape[1]).encode([text])
    for filters in (Filters.of(label="unsafe"), Filters.of(label=["safe"]), Filters.of(dataset="near_duplicates", label="safe")):
        hits = _nearest(pool, q, 25, filters)
        allowed = pool.mask(filters)
        sims = (pool.vectors.astype(np.float64) @ q[0].astype(np.float64))
        sims[~allowed] = -np.inf
        expected = [int(pool.prompt_ids[j]) for j in np.lexsort((pool.prompt_ids, -sims))[:25]]
        assert [pid for pid, _ in hits] == expected
    none = _nearest(pool, q, 5, Filters.of(dataset="no-such-set"))
    assert none == []


def test_every_reader_names_the_same_neighbours(dup_store):
    """Suspects, the pairs screen's neighbour pane, query and the detection metric use one service."""
    prompts = _texts(dup_store)
    suspects = dup_store.review.suspects("minilm", by="label", k=K, limit=len(prompts), max_purity=1.0)
    assert len(suspects) == len(prompts)
    by_suspects = {s.prompt.id: [pid for pid, _ in s.neighbours] for s in suspects}
    sample = sorted(prompts)[::37]
    results = dup_store.guard.query([prompts[i][0] for i in sample], k=K + 1, label=["safe", "unsafe"])
    for pid, r in zip(sample, results):
        pane = [n.prompt_id for n in dup_store.review.neighbours(pid, encoder="minilm", k=K)]
        queried = [n.prompt_id for n in r.neighbours]
        assert queried[0] == pid  # its own text: itself first, then the same list as everyone else
        assert pane == queried[1:] == by_suspects[pid]
        assert len(pane) == K

    (run,) = dup_store.metric_runs.compute("detect", encoder="minilm", k=K)
    assert run.details["graph"]["source"] == "cache"  # the graph suspects built: the same neighbours
    ids = np.array(sorted(prompts))
    is_unsafe = np.array([prompts[i][1] == "unsafe" for i in ids])
    row = {int(p): n for n, p in enumerate(ids)}
    for worst in run.details["likely_mislabeled"]:
        nb = np.array([[row[p] for p in by_suspects[worst["prompt_id"]]]])
        pane = dup_store.review.neighbours(worst["prompt_id"], encoder="minilm", k=K)
        sims = np.array([[n.similarity for n in pane]])
        assert knn_scores(nb, sims, is_unsafe, K)[0] == pytest.approx(worst["unsafe_score"], abs=1e-12)
