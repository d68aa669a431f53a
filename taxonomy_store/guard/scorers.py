"""Unsafe scorers of the guard: how a query's nearness to stored labeled prompts becomes a score.

- `knn-share`: the similarity-weighted share of unsafe prompts among the k nearest labeled
  prompts (the paper's kNN detector). Blind to distance: k far-away unsafe neighbours give 1.0.
- `knn-distance`: each of the k nearest labeled prompts votes +1 (unsafe) or -1 (safe) with the
  weight of its normalised similarity (cos - b) / (1 - b) clipped to [0, 1] (b: the encoder's
  baseline similarity of unrelated prompts), averaged over k. Far-away neighbours count little,
  so "nothing close" scores near 0 instead of a confident 1.
- `knn-contrast`: how much nearer the query sits to unsafe than to safe prompts: the mean
  normalised similarity of its k nearest unsafe prompts minus that of its k nearest safe ones
  (each label searched on its own). Every label brings k voters whatever its share of the
  store, so a store that holds five unsafe prompts for each safe one does not tilt the score
  towards unsafe; far from everything it scores near 0.
- `probe`: an L2-regularised logistic regression (scikit-learn) on the stored vectors, classes
  balanced; its score is P(unsafe). Refit in about a second when labels change.

kNN scorers read neighbour lists (pool row numbers, similarities) made by the neighbour
service (`score_near` asks it); the formulas themselves are pure. Higher score = more unsafe,
for every scorer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from taxonomy_store.metrics.detection import knn_scores
from taxonomy_store.neighbours.service import Neighbours, Pool

SCORERS = ("knn-share", "knn-distance", "knn-contrast", "probe")
PROBE_C = 1.0


def normalised_similarity(sims: np.ndarray, baseline: float) -> np.ndarray:
    """(cos - b) / (1 - b), clipped to [0, 1]: 0 for unrelated prompts, 1 for the same vector."""
    return np.clip((np.asarray(sims, dtype=np.float64) - baseline) / (1.0 - baseline), 0.0, 1.0)


def knn_share(idx: np.ndarray, sims: np.ndarray, is_unsafe: np.ndarray, k: int) -> np.ndarray:
    return knn_scores(idx, sims, is_unsafe, k)


def knn_distance(idx: np.ndarray, sims: np.ndarray, is_unsafe: np.ndarray, k: int, baseline: float) -> np.ndarray:
    nb = np.asarray(idx)[:, :k]
    valid = nb >= 0
    sign = np.where(np.asarray(is_unsafe, dtype=bool)[np.where(valid, nb, 0)], 1.0, -1.0)
    w = np.where(valid, normalised_similarity(np.where(valid, np.asarray(sims)[:, :k], -1.0), baseline), 0.0)
    return (w * sign).sum(axis=1) / max(int(k), 1)


def knn_contrast(unsafe_sims: np.ndarray, safe_sims: np.ndarray, k: int, baseline: float) -> np.ndarray:
    """Mean normalised similarity of the k nearest unsafe prompts minus that of the k nearest safe ones.

    unsafe_sims, safe_sims: each query's similarities to its nearest prompts of that label alone
    (-inf where the label has fewer than k prompts: they count as unrelated)."""
    def near(sims: np.ndarray) -> np.ndarray:
        return normalised_similarity(np.asarray(sims)[:, :k], baseline).sum(axis=1) / max(int(k), 1)

    return near(unsafe_sims) - near(safe_sims)


def score_near(name: str, pool: Pool, vectors: np.ndarray, voters: np.ndarray, is_unsafe: np.ndarray, k: int,
               baseline: float, exclude_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores under a kNN scorer, similarity to the nearest voter) of these vectors.

    voters: a boolean per pool row, the labeled prompts that may vote; is_unsafe: a boolean per pool row."""
    idx, sims = Neighbours.nearest(pool, vectors, k, mask=voters, exclude_rows=exclude_rows)
    nearest = np.where(idx[:, 0] >= 0, sims[:, 0], -1.0)
    if name == "knn-contrast":
        unsafe = is_unsafe.astype(bool)
        _, u = Neighbours.nearest(pool, vectors, k, mask=voters & unsafe, exclude_rows=exclude_rows)
        _, s = Neighbours.nearest(pool, vectors, k, mask=voters & ~unsafe, exclude_rows=exclude_rows)
        return knn_contrast(u, s, k, baseline), nearest
    return knn_score(name, idx, sims, is_unsafe, k, baseline), nearest


def knn_score(name: str, idx: np.ndarray, sims: np.ndarray, is_unsafe: np.ndarray, k: int, baseline: float) -> np.ndarray:
    if name == "knn-share":
        return knn_share(idx, sims, is_unsafe, k)
    if name == "knn-distance":
        return knn_distance(idx, sims, is_unsafe, k, baseline)
    raise ValueError(f"not a kNN scorer: {name!r}")


@dataclass
class Probe:
    """Logistic regression on normalised vectors: P(unsafe | vector)."""

    coef: np.ndarray
    intercept: float

    @classmethod
    def fit(cls, x: np.ndarray, is_unsafe: np.ndarray, *, c: float = PROBE_C) -> "Probe":
        from sklearn.linear_model import LogisticRegression

        y = np.asarray(is_unsafe, dtype=bool)
        if y.all() or not y.any():
            raise ValueError("the probe needs safe and unsafe prompts")
        model = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        model.fit(np.asarray(x, dtype=np.float64), y.astype(int))
        return cls(coef=model.coef_[0].astype(np.float64), intercept=float(model.intercept_[0]))

    def score(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, dtype=np.float64) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))

    def to_dict(self) -> dict[str, Any]:
        return {"coef": [float(v) for v in self.coef], "intercept": self.intercept}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Probe | None":
        if not d or "coef" not in d:
            return None
        return cls(coef=np.asarray(d["coef"], dtype=np.float64), intercept=float(d["intercept"]))
