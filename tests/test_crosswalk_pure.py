"""The pure maths of crosswalks and overlap, against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from taxonomy_store.crosswalks.overlap import OverlapGroup, near_groups, pair_counts
from taxonomy_store.metrics.crosswalk import MAPS_TO, NO_COUNTERPART, SPLITS_INTO, read_proposal, tally
from taxonomy_store.metrics.overlap import near_pairs, union_groups



def test_tally_shares_coverage_and_similarity():
    groups = np.array([0, 0, 1])
    targets = np.array([[0, 1], [0, 0], [1, -1]])
    sims = np.array([[0.9, 0.3], [0.5, 0.5], [0.2, 0.0]])
    t = tally(groups, 2, targets, sims, 2, radius=0.4)
    # prompt 0 gives 0.75 / 0.25, prompt 1 gives 1.0 / 0; group 0's mean: 0.875 / 0.125
    assert t.share[0] == pytest.approx([0.875, 0.125])
    assert t.share[1] == pytest.approx([0.0, 1.0])
    assert t.mean_similarity[0, 0] == pytest.approx((0.9 + 0.5 + 0.5) / 3)
    assert t.mean_similarity[0, 1] == pytest.approx(0.3)
    assert np.isnan(t.mean_similarity[1, 0])
    assert t.coverage.tolist() == [1.0, 0.0]
    assert t.count.tolist() == [2, 1]


def test_readings():
    assert read_proposal(np.array([0.7, 0.2, 0.1]), 0.9)[:2] == (MAPS_TO, [0])
    assert read_proposal(np.array([0.4, 0.35, 0.25]), 0.9)[:2] == (SPLITS_INTO, [0, 1, 2])
    assert read_proposal(np.array([0.45, 0.3, 0.25]), 0.3)[0] == NO_COUNTERPART  # distant
    assert read_proposal(np.array([0.12] * 8), 0.9)[0] == NO_COUNTERPART  # weak: spread thin (top three: 36 %)
    assert read_proposal(np.array([0.29, 0.16, 0.07] + [0.06] * 8), 0.9)[:2] == (SPLITS_INTO, [0, 1])  # broad, finer target
    assert read_proposal(np.array([0.35, 0.2, 0.15]), 0.9)[:2] == (MAPS_TO, [0])
    assert read_proposal(np.zeros(3), 0.9)[0] == NO_COUNTERPART


def test_near_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(40, 8))
    x = np.concatenate([base, base[:15] + rng.normal(scale=0.05, size=(15, 8))])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    sims = x @ x.T
    brute = {(i, j) for i in range(len(x)) for j in range(i + 1, len(x)) if sims[i, j] >= 0.97}
    for block in (7, 16, 1000):
        got = {tuple(p) for p in near_pairs(x, 0.97, block=block).tolist()}
        assert got == brute
    assert len(brute) >= 15


def test_union_groups_and_counts():
    roots = union_groups(6, [(4, 1), (1, 3), (5, 2)])
    assert roots.tolist() == [0, 1, 2, 1, 1, 2]
    x = np.eye(4)[[0, 0, 1, 2, 2, 2, 3]].astype(np.float32)
    assert near_groups(x, 0.99) == [[0, 1], [3, 4, 5]]
    groups = [OverlapGroup("exact", [1], ["a", "b"], []), OverlapGroup("near", [2, 3], ["a", "a"], []),
              OverlapGroup("near", [4, 5], ["a", "b", "b"], [])]
    counts = {(p["a"], p["b"]): (p["exact"], p["near"]) for p in pair_counts(groups, ["a", "b"])}
    assert counts == {("a", "a"): (0, 1), ("b", "b"): (0, 1), ("a", "b"): (1, 1)}
