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

A scorer is a class with a `name`, registered once (`@register`); calibration, query, evaluate
and the TUI look it up by name (`scorer_named`, `SCORERS`). kNN scorers read one `Near` of the
query vectors: their nearest voters and, in the same pass over the pool, the nearest of each
label (`near` asks the neighbour service once); the formulas themselves are pure. Higher
score = more unsafe, for every scorer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from taxonomy_store.errors import InvalidValue
from taxonomy_store.metrics.detection import knn_scores
from taxonomy_store.metrics.similarity import merge_topk
from taxonomy_store.neighbours.service import Filters, Neighbours, Pool

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


@dataclass(frozen=True)
class Near:
    """What the scorers read of some query vectors: their k nearest voters (pool rows, -1 padded,
    and similarities), and the k nearest of each label on its own, all from one search."""

    idx: np.ndarray
    sims: np.ndarray
    unsafe_sims: np.ndarray
    safe_sims: np.ndarray
    is_unsafe: np.ndarray  # a boolean per pool row
    k: int
    baseline: float

    @property
    def nearest(self) -> np.ndarray:
        """Cosine similarity to the nearest voter (-1 without one)."""
        return np.where(self.idx[:, 0] >= 0, self.sims[:, 0], -1.0)


def near(pool: Pool, vectors: np.ndarray, voters: np.ndarray | None, k: int, baseline: float, *,
         is_unsafe: np.ndarray | None = None, exclude_rows: np.ndarray | None = None, also: tuple[Any, ...] = (),
         search_k: int = 0) -> tuple[Near, list[tuple[np.ndarray, np.ndarray]]]:
    """The voters near these vectors, in one search of the pool: (Near, the nearest under each mask of `also`).

    voters: a boolean per pool row (None: every safe or unsafe prompt, whose split of the pool the
    pool keeps); is_unsafe: a boolean per pool row (default: the stored labels). The nearest
    voters are merged from the nearest unsafe and the nearest safe ones (the k nearest of a set
    are among the k nearest of its halves). `also` (Filters or masks) are searched in the same
    pass, max(k, search_k) deep."""
    # the pool keeps its label masks: a query at 1M does not compare a million labels again
    unsafe = pool.mask(Filters(label=("unsafe",))) if is_unsafe is None else np.asarray(is_unsafe, dtype=bool)
    halves: list[Any] = [Filters(label=("unsafe",)), Filters(label=("safe",))] if voters is None else [voters & unsafe, voters & ~unsafe]
    found = Neighbours.search(pool, vectors, max(k, search_k), [*halves, *also], exclude_rows=exclude_rows)
    (ui, us), (si, ss) = found[0], found[1]
    idx, sims = merge_topk(ui[:, :k], us[:, :k], si[:, :k], ss[:, :k], k)
    return Near(idx=idx, sims=sims, unsafe_sims=us[:, :k], safe_sims=ss[:, :k], is_unsafe=unsafe, k=k, baseline=baseline), found[2:]


class Scorer:
    """A way to turn a query's nearness to stored labeled prompts into an unsafe score."""

    name: ClassVar[str]
    reads_neighbours: ClassVar[bool] = True  # scores from a `Near`
    learns: ClassVar[bool] = False  # fits a model on the training vectors (`fit`), stored with the calibration

    def fit(self, x: np.ndarray, is_unsafe: np.ndarray) -> Any:
        return None

    def score(self, near: Near, vectors: np.ndarray, model: Any = None) -> np.ndarray:
        raise NotImplementedError

    def model_from_dict(self, d: dict[str, Any] | None) -> Any:
        return None


SCORERS: dict[str, Scorer] = {}


def register(cls: type[Scorer]) -> type[Scorer]:
    """Add a scorer to the registry, under its name (in the order they are registered)."""
    if cls.name in SCORERS:
        raise ValueError(f"a scorer named {cls.name!r} is registered already")
    SCORERS[cls.name] = cls()
    return cls


def scorer_named(name: str) -> Scorer:
    try:
        return SCORERS[name]
    except KeyError:
        raise InvalidValue(f"unknown scorer {name!r}", f"scorers: {', '.join(SCORERS)}") from None


@register
class KnnShare(Scorer):
    name = "knn-share"

    def score(self, near: Near, vectors: np.ndarray, model: Any = None) -> np.ndarray:
        return knn_share(near.idx, near.sims, near.is_unsafe, near.k)


@register
class KnnDistance(Scorer):
    name = "knn-distance"

    def score(self, near: Near, vectors: np.ndarray, model: Any = None) -> np.ndarray:
        return knn_distance(near.idx, near.sims, near.is_unsafe, near.k, near.baseline)


@register
class KnnContrast(Scorer):
    name = "knn-contrast"

    def score(self, near: Near, vectors: np.ndarray, model: Any = None) -> np.ndarray:
        return knn_contrast(near.unsafe_sims, near.safe_sims, near.k, near.baseline)


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


@register
class ProbeScorer(Scorer):
    name = "probe"
    reads_neighbours = False
    learns = True

    def fit(self, x: np.ndarray, is_unsafe: np.ndarray) -> Probe:
        return Probe.fit(x, is_unsafe)

    def score(self, near: Near, vectors: np.ndarray, model: Any = None) -> np.ndarray:
        if model is None:
            raise ValueError("the probe scores only once fitted")
        return model.score(vectors)

    def model_from_dict(self, d: dict[str, Any] | None) -> Probe | None:
        return Probe.from_dict(d)
