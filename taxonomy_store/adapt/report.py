"""FROM vs NEW after `tstore adapt`: the same table for both encoders, from their vectors.

Pure numpy over the store's metric functions, so the figures match `tstore metrics`:
- cp@10_macro over the categorised unsafe prompts of the evaluated part;
- separation (mean normalised pair similarity, per pair type and macro) of its challenging
  pairs, and the contrast boundary of its contrast pairs, with b estimated the store's way
  (seeded 500 x 500 cross sample) over the evaluated part's vectors, per encoder;
- guard AUROC: the kNN unsafe score (k=10, similarity-weighted) of each evaluated labeled prompt
  against the training prompts (held-out), or leave-one-out over all of them (no hold-out);
- everyday_spearman (NEW only): Spearman correlation of FROM's and NEW's cosines over all pairs
  of up to 300 evaluated safe prompts that belong to no pair.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from taxonomy_store import metrics as M
from taxonomy_store.adapt.data import CuratedSet
from taxonomy_store.metrics.detection import knn_scores

K = 10
EVERYDAY = 300


def _rows(data: CuratedSet, ids: set[int]) -> np.ndarray:
    return np.array([n for n, pid in enumerate(data.ids.tolist()) if pid in ids], dtype=np.int64)


def _guard_auroc(x: np.ndarray, data: CuratedSet, evaluated: np.ndarray, reference: np.ndarray | None) -> float | None:
    lab = data.labels
    q = evaluated[np.isin(lab[evaluated], ["safe", "unsafe"])]
    if reference is None:  # leave-one-out over the evaluated prompts
        if q.size < 2:
            return None
        nb, sims = M.knn(x[q], K)
        scores = knn_scores(nb, sims, lab[q] == "unsafe", K)
    else:
        ref = reference[np.isin(lab[reference], ["safe", "unsafe"])]
        if q.size == 0 or ref.size == 0:
            return None
        nb, sims = M.knn_query(x[q], x[ref], K)
        scores = knn_scores(nb, sims, lab[ref] == "unsafe", K)
    value = M.auroc(scores, lab[q] == "unsafe")
    return None if np.isnan(value) else value


def table(x: np.ndarray, data: CuratedSet, evaluated_ids: set[int], reference_ids: set[int] | None) -> dict[str, Any]:
    """Flat figures of one encoder (x: its unit vectors in data.ids order) on the evaluated prompts."""
    ev = _rows(data, evaluated_ids)
    out: dict[str, Any] = {"prompts": int(ev.size)}
    cat_rows = ev[(data.labels[ev] == "unsafe") & (data.categories[ev] != "")]
    if cat_rows.size > K:
        nb, _ = M.knn(x[cat_rows], K)
        out[f"cp@{K}_macro"] = M.categorical_purity(nb, data.categories[cat_rows], K).macro
    if ev.size >= 2:
        out["baseline"] = M.estimate_baseline(x[ev], data.labels[ev], sample=500, seed=0)["baseline"]
    pos = {int(pid): n for n, pid in enumerate(data.ids.tolist())}
    in_ev = set(int(i) for i in data.ids[ev].tolist())
    for kind, name in (("challenging", "separation"), ("contrast", "contrast")):
        pairs = [p for p in data.pairs if p[3] == kind and p[0] in in_ev and p[1] in in_ev]
        if not pairs or "baseline" not in out:
            continue
        cos = M.pair_cosines(x[[pos[p[0]] for p in pairs]], x[[pos[p[1]] for p in pairs]])
        if kind == "challenging":
            res = M.separation(cos, np.array([p[2] for p in pairs]), out["baseline"])["metrics"]
            out.update({k: v for k, v in res.items() if k.startswith("separation_norm")})
        else:
            res = M.contrast_boundary(cos, np.array([p[0] for p in pairs]), out["baseline"])["metrics"]
            out["contrast_max_norm_mean"] = res["contrast_max_norm_mean"]
    ref = None if reference_ids is None else _rows(data, reference_ids)
    out["guard_auroc"] = _guard_auroc(x, data, ev, ref)
    return out


def everyday_rows(data: CuratedSet, evaluated_ids: set[int], seed: int = 0) -> np.ndarray:
    paired = {p[0] for p in data.pairs} | {p[1] for p in data.pairs}
    rows = [n for n, pid in enumerate(data.ids.tolist())
            if pid in evaluated_ids and pid not in paired and data.labels[n] == "safe"]
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(np.array(rows, dtype=np.int64))[:EVERYDAY])


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a, kind="stable"), kind="stable").astype(np.float64)
    rb = np.argsort(np.argsort(b, kind="stable"), kind="stable").astype(np.float64)
    return float(np.corrcoef(ra, rb)[0, 1])


def everyday_spearman(x_from: np.ndarray, x_new: np.ndarray, rows: np.ndarray) -> float | None:
    if rows.size < 3:
        return None
    iu = np.triu_indices(rows.size, 1)
    return spearman((x_from[rows] @ x_from[rows].T)[iu], (x_new[rows] @ x_new[rows].T)[iu])


def compare(x_from: np.ndarray, x_new: np.ndarray, data: CuratedSet, evaluated_ids: set[int],
            reference_ids: set[int] | None) -> dict[str, dict[str, Any]]:
    """{'from': {...}, 'new': {...}} with the same keys; everyday_spearman on NEW's side."""
    before = table(x_from, data, evaluated_ids, reference_ids)
    after = table(x_new, data, evaluated_ids, reference_ids)
    before["everyday_spearman"] = 1.0
    after["everyday_spearman"] = everyday_spearman(x_from, x_new, everyday_rows(data, evaluated_ids))
    return {"from": before, "new": after}
