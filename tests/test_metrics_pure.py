"""The pure metric functions against straightforward brute-force implementations on seeded data."""

from __future__ import annotations

import numpy as np
import pytest

from taxonomy_store.metrics import (
    auroc,
    best_f1,
    categorical_purity,
    contrast_boundary,
    estimate_baseline,
    knn,
    knn_detection,
    knn_query,
    majority_category,
    normalise,
    normalised_similarity,
    separation,
    update_knn,
)
from taxonomy_store.metrics.detection import confusion, neighbour_mix
from taxonomy_store.metrics.similarity import merge_topk, tile_rows


# -- brute force -------------------------------------------------------------------------------
def brute_knn(x, k, q=None, exclude=None):
    """Full float64 matrix, order (similarity desc, index asc), self excluded by index."""
    x = normalise(x).astype(np.float64)
    if q is None:
        q, exclude = x, np.arange(x.shape[0])
    else:
        q = normalise(q).astype(np.float64)
    idx = np.full((q.shape[0], k), -1)
    sim = np.full((q.shape[0], k), -np.inf)
    for i in range(q.shape[0]):
        s = q[i] @ x.T
        cand = [j for j in range(x.shape[0]) if exclude is None or j != exclude[i]]
        cand.sort(key=lambda j: (-s[j], j))
        cand = cand[:k]
        idx[i, : len(cand)] = cand
        sim[i, : len(cand)] = s[cand]
    return idx, sim


def tie_vectors(n, d=16, seed=0):
    """Unit vectors with four entries of +-0.5: every cosine is an exact multiple of 1/4 (many ties)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, d), dtype=np.float32)
    for i in range(n):
        pos = rng.choice(d, size=4, replace=False)
        x[i, pos] = rng.choice([-0.5, 0.5], size=4)
    return x


def assert_same_graph(got, want):
    gi, gs = got
    wi, ws = want
    np.testing.assert_array_equal(gi, wi)
    np.testing.assert_allclose(np.where(np.isfinite(gs), gs, 9), np.where(np.isfinite(ws), ws, 9), atol=1e-12)


# -- similarity --------------------------------------------------------------------------------
@pytest.mark.parametrize("n,d,k,block", [(300, 32, 10, None), (300, 32, 10, 37), (257, 8, 5, 64), (40, 16, 10, 7)])
def test_knn_matches_brute_force_random(n, d, k, block):
    x = np.random.default_rng(n + d).standard_normal((n, d)).astype(np.float32)
    assert_same_graph(knn(x, k, block_size=block), brute_knn(x, k))


@pytest.mark.parametrize("block", [None, 11])
def test_knn_ties_break_to_lower_index(block):
    x = tie_vectors(200)
    x[50] = x[10]  # exact duplicates are neighbours of each other, never of themselves
    got = knn(x, 10, block_size=block)
    assert_same_graph(got, brute_knn(x, 10))
    assert got[0][10, 0] == 50 and got[0][50, 0] == 10


def test_knn_k_larger_than_set_pads():
    x = np.random.default_rng(1).standard_normal((6, 4))
    idx, sim = knn(x, 10)
    assert idx.shape == (6, 10)
    assert (idx[:, 5:] == -1).all() and np.isneginf(sim[:, 5:]).all()
    assert_same_graph((idx, sim), brute_knn(x, 10))


def test_knn_query_with_exclusions():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((150, 12))
    q_rows = np.array([0, 5, 149, 77])
    exclude = np.array([0, 5, -1, 77])
    got = knn_query(x[q_rows], x, 8, exclude=exclude, block_size=16)
    assert_same_graph(got, brute_knn(x, 8, q=x[q_rows], exclude=exclude))
    assert got[0][2, 0] == 149  # not excluded: a vector is its own nearest


def test_tile_rows_bounded_by_budget():
    rows = tile_rows(100_000, 64 * 1024 * 1024)
    assert rows * 100_000 * 5 <= 64 * 1024 * 1024
    assert tile_rows(100_000) >= 1


def test_merge_topk():
    a_i = np.array([[1, 4, -1]])
    a_s = np.array([[0.9, 0.5, -np.inf]])
    b_i = np.array([[2, 3]])
    b_s = np.array([[0.5, 0.95]])
    i, s = merge_topk(a_i, a_s, b_i, b_s, 4)
    assert i.tolist() == [[3, 1, 2, 4]]
    assert s.tolist() == [[0.95, 0.9, 0.5, 0.5]]


def assert_prefix_exact(got_idx, got_sim, x, k):
    """First k columns equal brute force; every kept entry after them is an exact prefix too."""
    wi, ws = brute_knn(x, got_idx.shape[1])
    np.testing.assert_array_equal(got_idx[:, :k], wi[:, :k])
    kept = got_idx >= 0
    np.testing.assert_array_equal(np.where(kept, got_idx, -1), np.where(kept, wi, -1))
    np.testing.assert_allclose(got_sim[kept], ws[kept], atol=1e-12)
    assert (kept.sum(axis=1) >= k).all()


def no_vectors():
    raise AssertionError("vectors were loaded")


def test_update_knn_equals_full_recompute():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((400, 16)).astype(np.float32)
    keys = np.array([f"{i}:a" for i in range(400)])
    old_i, old_s = knn(x, 20)
    # Unchanged: everything reused, no vectors needed.
    i, s, st = update_knn(keys, old_i, old_s, keys, no_vectors, 10)
    assert_same_graph((i, s), (old_i, old_s))
    assert st["recomputed"] == 0 and st["reused"] == 400 and not st["vectors_loaded"]
    # Removals only (a label edit moves a prompt out of the CP set): no vectors needed either.
    keep = np.setdiff1d(np.arange(400), [10, 11, 300])
    i, s, st = update_knn(keys, old_i, old_s, keys[keep], no_vectors, 10)
    assert_prefix_exact(i, s, x[keep], 10)
    assert st["recomputed"] == 0 and not st["vectors_loaded"]
    # Two texts changed, three rows removed, five added (ids kept in order).
    x2 = x.copy()
    x2[[3, 200]] = rng.standard_normal((2, 16))
    keys2 = keys.copy()
    keys2[[3, 200]] = ["3:b", "200:b"]
    new_x = np.concatenate([x2[keep], rng.standard_normal((5, 16)).astype(np.float32)])
    new_keys = np.concatenate([keys2[keep], [f"{400 + j}:a" for j in range(5)]])
    i, s, st = update_knn(keys, old_i, old_s, new_keys, lambda: new_x, 10)
    assert_prefix_exact(i, s, new_x, 10)
    assert not st["full"] and st["recomputed"] == 7 and st["merged"] > 300 and st["vectors_loaded"]
    # Chained updates stay exact: remove many rows' neighbours until some rows run short.
    gone = np.arange(0, 405, 3)
    keep2 = np.setdiff1d(np.arange(new_keys.size), gone)
    i2, s2, st2 = update_knn(new_keys, i, s, new_keys[keep2], lambda: new_x[keep2], 10, max_changed_share=1.0)
    assert_prefix_exact(i2, s2, new_x[keep2], 10)
    assert st2["recomputed"] > 0
    # Many changes: falls back to a full pass, same result.
    many = keys.copy()
    many[:150] = [f"{j}:c" for j in range(150)]
    i, s, st = update_knn(many, old_i, old_s, keys, x, 10)
    assert st["full"]
    assert_same_graph((i, s), (old_i, old_s))


def test_update_knn_with_ties():
    x = tie_vectors(120, seed=5)
    keys = np.arange(120)
    old_i, old_s = knn(x, 20)
    new_x = np.concatenate([x, tie_vectors(3, seed=9)])
    i, s, _ = update_knn(keys, old_i, old_s, np.arange(123), new_x, 10)
    assert_prefix_exact(i, s, new_x, 10)


# -- categorical purity ------------------------------------------------------------------------
def brute_cp(idx, cats, k):
    per_row = {}
    for i in range(len(cats)):
        nb = [j for j in idx[i, :k] if j >= 0]
        if nb:
            per_row[i] = sum(cats[j] == cats[i] for j in nb) / len(nb)
    per_cat = {}
    for c in sorted(set(cats)):
        vals = [v for i, v in per_row.items() if cats[i] == c]
        if vals:
            per_cat[c] = sum(vals) / len(vals)
    return per_cat, sum(per_cat.values()) / len(per_cat), sum(per_row.values()) / len(per_row)


def test_cp_matches_brute_force_with_small_and_singleton_categories():
    rng = np.random.default_rng(11)
    n = 120
    cats = rng.choice(["a", "b", "c", "d"], size=n, p=[0.5, 0.3, 0.15, 0.05]).astype("<U4")
    cats[17] = "solo"  # a category with one member scores 0
    x = rng.standard_normal((n, 8)) + (np.array([ord(c[0]) for c in cats])[:, None] % 5) * 0.8
    idx, _ = knn(x, 12)
    for k in (1, 5, 12):
        res = categorical_purity(idx, cats, k)
        per_cat, macro, micro = brute_cp(idx, cats.tolist(), k)
        assert res.per_category == pytest.approx(per_cat, abs=1e-12)
        assert res.macro == pytest.approx(macro, abs=1e-12)
        assert res.micro == pytest.approx(micro, abs=1e-12)
        assert res.per_category["solo"] == 0.0
        assert res.to_metrics()[f"cp@{k}_macro"] == res.macro and res.primary_name == f"cp@{k}_macro"


def test_cp_with_k_larger_than_the_set():
    x = np.random.default_rng(2).standard_normal((5, 3))
    cats = np.array([0, 0, 0, 1, 1])
    idx, _ = knn(x, 10)
    res = categorical_purity(idx, cats, 10)
    # Every row sees all 4 others: class 0 rows share 2/4, class 1 rows 1/4.
    assert res.per_category == {"0": 0.5, "1": 0.25}
    assert res.micro == pytest.approx((3 * 0.5 + 2 * 0.25) / 5)


def test_cp_on_separable_clusters_is_one():
    rng = np.random.default_rng(4)
    centers = np.eye(3) * 10
    cats = np.repeat([0, 1, 2], 30)
    x = centers[cats] + rng.standard_normal((90, 3)) * 0.1
    idx, _ = knn(x, 10)
    assert categorical_purity(idx, cats, 10).macro == 1.0


# -- detection ---------------------------------------------------------------------------------
def brute_auroc(scores, y):
    pos = [s for s, t in zip(scores, y) if t]
    neg = [s for s, t in zip(scores, y) if not t]
    return sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))


def brute_best_f1(scores, y):
    best = None
    for t in sorted(set(scores), reverse=True):
        pred = [s >= t for s in scores]
        tp = sum(p and q for p, q in zip(pred, y))
        fp = sum(p and not q for p, q in zip(pred, y))
        f1 = 2 * tp / (2 * tp + fp + (sum(y) - tp)) if tp else 0.0
        if best is None or f1 > best[0]:
            best = (f1, t, tp / (tp + fp), tp / sum(y), fp / (len(y) - sum(y)))
    return best


def test_auroc_and_best_f1_with_ties():
    rng = np.random.default_rng(5)
    y = rng.random(200) < 0.4
    scores = np.round(rng.random(200) * 0.5 + y * 0.3, 1)  # rounded: many tied scores
    assert auroc(scores, y) == pytest.approx(brute_auroc(scores.tolist(), y.tolist()), abs=1e-12)
    bf = best_f1(scores, y)
    f1, t, p, r, fpr = brute_best_f1(scores.tolist(), y.tolist())
    assert (bf["f1"], bf["threshold"], bf["precision"], bf["recall"], bf["fpr"]) == pytest.approx((f1, t, p, r, fpr))
    assert auroc(np.ones(4), np.array([1, 0, 1, 0], bool)) == 0.5
    assert np.isnan(auroc(np.ones(3), np.ones(3, bool)))


def test_knn_detection_leave_one_out_matches_brute_force():
    rng = np.random.default_rng(8)
    y = rng.random(150) < 0.5
    x = rng.standard_normal((150, 6)) + y[:, None] * 0.7
    idx, sim = knn(x, 7)
    xn = normalise(x).astype(np.float64)
    for weighting in ("similarity", "uniform"):
        res = knn_detection(idx, sim, y, 7, weighting=weighting)
        want = []
        for i in range(150):
            s = xn @ xn[i]
            others = sorted((j for j in range(150) if j != i), key=lambda j: (-s[j], j))[:7]
            w = [max(s[j], 0.0) if weighting == "similarity" else 1.0 for j in others]
            want.append(sum(wj * y[j] for wj, j in zip(w, others)) / sum(w))
        np.testing.assert_allclose(res["scores"], want, atol=1e-12)
        assert res["metrics"]["detect_auroc@7"] == pytest.approx(brute_auroc(want, y.tolist()))
        assert res["metrics"]["detect_auroc@7"] > 0.6


def test_majority_category_confusion_and_mix():
    rng = np.random.default_rng(9)
    n, k, C = 80, 6, 4
    codes = rng.integers(0, C, size=n)
    idx = np.array([rng.choice(np.delete(np.arange(n), i), size=k, replace=False) for i in range(n)])
    idx[3, 4:] = -1
    pred = majority_category(idx, codes, k, C)
    for i in range(n):
        nb = [j for j in idx[i] if j >= 0]
        counts = {}
        for pos, j in enumerate(nb):
            c = codes[j]
            cnt, first = counts.get(c, (0, pos))
            counts[c] = (cnt + 1, first)
        want = min(counts, key=lambda c: (-counts[c][0], counts[c][1]))
        assert pred[i] == want
    m = confusion(codes, pred, C)
    assert m.sum() == n and np.trace(m) == int((pred == codes).sum())
    mix = neighbour_mix(idx, codes, k, C)
    assert mix.sum() == (idx >= 0).sum()
    assert mix[codes[0], codes[idx[0, 0]]] >= 1


# -- pairs and baseline ------------------------------------------------------------------------
def test_separation_and_contrast_match_loops():
    rng = np.random.default_rng(10)
    cos = rng.uniform(-0.2, 1.0, size=60)
    types = np.array(["t1", "t2", "t3"] * 20)
    b = 0.092
    res = separation(cos, types, b)
    for t in ("t1", "t2", "t3"):
        vals = [(c - b) / (1 - b) for c, tt in zip(cos, types) if tt == t]
        assert res["metrics"][f"separation_norm.{t}"] == pytest.approx(sum(vals) / len(vals), abs=1e-12)
        raw = [c for c, tt in zip(cos, types) if tt == t]
        assert res["metrics"][f"separation_cos.{t}"] == pytest.approx(sum(raw) / len(raw), abs=1e-12)
    assert res["metrics"]["separation_norm_micro"] == pytest.approx(np.mean(normalised_similarity(cos, b)))
    keys = np.repeat(np.arange(12), 5)
    cb = contrast_boundary(cos, keys, b)
    maxes = [max(cos[keys == u]) for u in range(12)]
    want = [(m - b) / (1 - b) for m in maxes]
    assert cb["metrics"]["contrast_max_norm_mean"] == pytest.approx(sum(want) / 12, abs=1e-12)
    assert cb["metrics"]["contrast_max_norm_q50"] == pytest.approx(float(np.median(want)))
    assert sum(cb["histogram"]["counts"]) == 12
    assert normalised_similarity(0.092, 0.092) == 0 and normalised_similarity(1.0, 0.092) == 1


def test_baseline_matches_brute_force_and_balances_labels():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((300, 10)) + 0.5
    labels = np.array(["safe"] * 60 + ["unsafe"] * 200 + ["unlabeled"] * 40)
    res = estimate_baseline(x, labels, sample=100, seed=3)
    # Recompute the same seeded draw by hand.
    xn = normalise(x).astype(np.float64)
    total, pairs = 0.0, 0
    from taxonomy_store.metrics.baseline import _draw

    r = np.random.default_rng(3)
    a, bb = _draw(r, 300, 100, labels), _draw(r, 300, 100, labels)
    for i in a:
        for j in bb:
            if i != j:
                total += xn[i] @ xn[j]
                pairs += 1
    assert res["baseline"] == pytest.approx(total / pairs, abs=1e-12) and res["pairs"] == pairs
    assert (labels[a] == "safe").sum() == 50 and (labels[a] == "unsafe").sum() == 50
    assert estimate_baseline(x, labels, sample=100, seed=3) == res  # seeded
    small = estimate_baseline(x[:30], sample=500, seed=0)
    assert small["sample_a"] == 30 and small["pairs"] == 30 * 30 - 30


def test_query_sized_searches_run_on_one_blas_thread_and_restore_the_setting(monkeypatch):
    """A few queries are a memory-bound matrix-vector product: a second BLAS thread only added its
    wake-up to every block (one query over 55,000 × 384: 56 ms vs 9.5 ms). The setting is process-wide,
    so concurrent searches must leave it as they found it."""
    import threading

    from threadpoolctl import threadpool_info

    from taxonomy_store.metrics import similarity
    from taxonomy_store.metrics.blas import SMALL_BATCH

    def blas_threads() -> list[int]:  # numpy's BLAS: the one a search uses (scipy may bring its own)
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas" and "numpy" in i["filepath"]]

    before = blas_threads()
    seen: list[list[int]] = []
    scan = similarity._scan

    def spy(*a, **kw):
        seen.append(blas_threads())
        return scan(*a, **kw)

    monkeypatch.setattr(similarity, "_scan", spy)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    for n_q in (1, SMALL_BATCH, SMALL_BATCH + 1):
        q = rng.standard_normal((n_q, 32)).astype(np.float32)
        idx, sims = similarity.knn_query(q, x, 5)
        brute = similarity.normalise(q) @ similarity.normalise(x).T
        assert np.array_equal(np.sort(idx, axis=1), np.sort(np.argsort(-brute, axis=1)[:, :5], axis=1))
        assert seen[-1] == ([1] * len(before) if n_q <= SMALL_BATCH else before)
        assert blas_threads() == before
    errors: list[BaseException] = []

    def many() -> None:
        try:
            for _ in range(30):
                similarity.knn_query(rng.standard_normal((2, 32)).astype(np.float32), x, 3)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=many) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and blas_threads() == before
