"""kNN safety detection, leave-one-out over labeled prompts, and kNN category prediction.

Unsafe score of a prompt: the similarity-weighted share of unsafe prompts among its k nearest
*other* labeled prompts (weights = cosine clipped at 0; rows whose weights are all 0 fall back
to the plain share). `weighting="uniform"` gives the plain share.

AUROC is exact and rank based (Mann-Whitney U with mid-ranks for tied scores). The best-F1
threshold predicts unsafe when score >= threshold; among equal F1 the highest threshold wins.
Majority category: the most frequent category among the k neighbours; a tie goes to the tied
category that appears nearest in the neighbour list.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from taxonomy_store.metrics.purity import same_share


def knn_scores(neighbours: np.ndarray, sims: np.ndarray, is_unsafe: np.ndarray, k: int, weighting: str = "similarity") -> np.ndarray:
    nb = np.asarray(neighbours)[:, :k]
    valid = nb >= 0
    y = np.asarray(is_unsafe, dtype=bool)
    nb_unsafe = y[np.where(valid, nb, 0)] & valid
    plain_den = valid.sum(axis=1)
    plain = np.where(plain_den > 0, nb_unsafe.sum(axis=1) / np.maximum(plain_den, 1), 0.0)
    if weighting == "uniform":
        return plain
    if weighting != "similarity":
        raise ValueError(f"unknown weighting {weighting!r}: use 'similarity' or 'uniform'")
    w = np.where(valid, np.clip(np.asarray(sims, dtype=np.float64)[:, :k], 0.0, None), 0.0)
    den = w.sum(axis=1)
    num = (w * nb_unsafe).sum(axis=1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), plain)


def auroc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve, exact, ties counted half (nan without both classes)."""
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    # Mid-ranks (1-based) for runs of equal scores.
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[starts[1:], s.size]
    mid = (starts + ends + 1) / 2.0
    ranks = np.empty(s.size)
    ranks[order] = np.repeat(mid, ends - starts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def best_f1(scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The threshold with the best F1 (predict positive when score >= threshold) and its rates."""
    scores = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y, dtype=bool)
    P, N = int(y.sum()), int((~y).sum())
    empty = {"threshold": float("nan"), "f1": 0.0, "precision": 0.0, "recall": 0.0, "fpr": 0.0, "tp": 0, "fp": 0, "fn": P, "tn": N}
    if P == 0 or scores.size == 0:
        return empty
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], y[order]
    tp_c, fp_c = np.cumsum(t), np.cumsum(~t)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last position of each distinct score
    tp, fp = tp_c[last], fp_c[last]
    precision = tp / (tp + fp)
    recall = tp / P
    f1 = np.where(tp > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    i = int(np.argmax(f1))  # first maximum = highest threshold
    return {
        "threshold": float(s[last[i]]),
        "f1": float(f1[i]),
        "precision": float(precision[i]),
        "recall": float(recall[i]),
        "fpr": float(fp[i] / N) if N else 0.0,
        "tp": int(tp[i]),
        "fp": int(fp[i]),
        "fn": int(P - tp[i]),
        "tn": int(N - fp[i]),
    }


def majority_category(neighbours: np.ndarray, codes: np.ndarray, k: int, n_codes: int | None = None) -> np.ndarray:
    """Per row: the majority code (ints 0..C-1) among its first k neighbours, -1 for rows without any."""
    nb = np.asarray(neighbours)[:, :k]
    codes = np.asarray(codes, dtype=np.int64)
    C = int(n_codes if n_codes is not None else (codes.max() + 1 if codes.size else 0))
    n, kk = nb.shape
    valid = nb >= 0
    nb_codes = codes[np.where(valid, nb, 0)]
    rows = np.repeat(np.arange(n), kk).reshape(n, kk)
    pos = np.broadcast_to(np.arange(kk), (n, kk))
    counts = np.zeros((n, max(C, 1)), dtype=np.int64)
    np.add.at(counts, (rows[valid], nb_codes[valid]), 1)
    first = np.full((n, max(C, 1)), kk, dtype=np.int64)
    np.minimum.at(first, (rows[valid], nb_codes[valid]), pos[valid])
    key = counts * (kk + 1) + (kk - first)
    pred = np.argmax(key, axis=1)
    return np.where(valid.any(axis=1), pred, -1)


def confusion(true_codes: np.ndarray, pred_codes: np.ndarray, n_codes: int) -> np.ndarray:
    """(C, C) counts: rows = true category, columns = predicted; rows predicted -1 are left out."""
    m = np.zeros((n_codes, n_codes), dtype=np.int64)
    ok = np.asarray(pred_codes) >= 0
    np.add.at(m, (np.asarray(true_codes)[ok], np.asarray(pred_codes)[ok]), 1)
    return m


def neighbour_mix(neighbours: np.ndarray, codes: np.ndarray, k: int, n_codes: int) -> np.ndarray:
    """(C, C) counts of kNN edges: row = a prompt's category, column = its neighbour's category."""
    nb = np.asarray(neighbours)[:, :k]
    codes = np.asarray(codes, dtype=np.int64)
    valid = nb >= 0
    src = np.broadcast_to(codes[:, None], nb.shape)[valid]
    dst = codes[nb[valid]]
    m = np.zeros((n_codes, n_codes), dtype=np.int64)
    np.add.at(m, (src, dst), 1)
    return m


def neighbour_agreement(neighbours: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Per-prompt purity: share of the k neighbours with the prompt's own value (label or category)."""
    return same_share(neighbours, values, k)


def knn_detection(
    neighbours: np.ndarray, sims: np.ndarray, is_unsafe: np.ndarray, k: int = 10, weighting: str = "similarity"
) -> dict[str, Any]:
    """Leave-one-out kNN detection over a graph of labeled prompts (each row's neighbours exclude itself).

    Returns flat values: detect_auroc@k (primary), detect_f1@k, detect_threshold@k,
    detect_precision@k, detect_recall@k, detect_fpr@k, plus per-row scores and label agreement.
    """
    y = np.asarray(is_unsafe, dtype=bool)
    scores = knn_scores(neighbours, sims, y, k, weighting)
    bf = best_f1(scores, y)
    metrics = {
        f"detect_auroc@{k}": auroc(scores, y),
        f"detect_f1@{k}": bf["f1"],
        f"detect_threshold@{k}": bf["threshold"],
        f"detect_precision@{k}": bf["precision"],
        f"detect_recall@{k}": bf["recall"],
        f"detect_fpr@{k}": bf["fpr"],
        "n_unsafe": float(y.sum()),
        "n_safe": float((~y).sum()),
    }
    return {
        "primary_name": f"detect_auroc@{k}",
        "metrics": metrics,
        "counts": {k_: bf[k_] for k_ in ("tp", "fp", "fn", "tn")},
        "scores": scores,
        "label_agreement": neighbour_agreement(neighbours, y, k),
    }
