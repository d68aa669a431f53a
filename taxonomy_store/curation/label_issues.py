"""Label issues by confident learning: out-of-sample probabilities, per-class thresholds.

Raw neighbour agreement flags every designed near-miss on a store where one label dominates
(1,185 unsafe against 251 safe flags the safe XSTest twins first). Confident learning (Northcutt
et al., the idea behind cleanlab) asks instead: under a probe trained without this prompt, is
another label at least as likely as that label usually is for its own members? The per-class
threshold is the mean out-of-sample probability of a class over the prompts that carry it, so
the base rate is accounted for. Pure numpy and scikit-learn; the caller brings the vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FOLDS = 5
SEED = 0
# Unit-length sentence vectors are small inputs: a weak penalty keeps the probabilities from all sitting near the base rate.
C = 10.0


@dataclass(frozen=True)
class Issue:
    row: int  # row in the caller's arrays
    given: int  # class index of the stored label
    suggested: int  # class index confident learning assigns
    p_given: float  # out-of-sample probability of the stored label (self-confidence)
    p_suggested: float


def out_of_sample_probabilities(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
                                *, folds: int = FOLDS, seed: int = SEED) -> np.ndarray:
    """(n, classes) probabilities, each row from a logistic probe fitted without that row's fold.

    `groups` keeps prompts that belong together (the two sides of a pair) in one fold, so a
    twin never judges its own partner."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import PredefinedSplit, StratifiedKFold, cross_val_predict

    smallest = int(np.bincount(y).min())
    folds = max(2, min(folds, smallest))
    probe = LogisticRegression(C=C, max_iter=2000)
    if groups is not None:
        # each group to a random fold (sklearn's group splitters took ten times longer here)
        order = np.random.default_rng(seed).permutation(int(groups.max()) + 1)
        cv = PredefinedSplit(order[groups] % folds)
        return cross_val_predict(probe, x, y, cv=cv, method="predict_proba")
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return cross_val_predict(probe, x, y, cv=cv, method="predict_proba")


def class_thresholds(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per class j: the mean out-of-sample probability of j over the rows labelled j."""
    return np.array([probs[y == j, j].mean() if np.any(y == j) else 1.0 for j in range(probs.shape[1])])


def confident_issues(probs: np.ndarray, y: np.ndarray) -> list[Issue]:
    """Rows whose confident class (the likeliest class among those at or above their threshold)
    is not the given one; least self-confident first."""
    t = class_thresholds(probs, y)
    above = probs >= t[None, :]
    masked = np.where(above, probs, -1.0)
    confident = masked.argmax(axis=1)
    has = above.any(axis=1)
    rows = np.flatnonzero(has & (confident != y))
    self_conf = probs[np.arange(len(y)), y]
    rows = rows[np.lexsort((rows, self_conf[rows]))]
    return [Issue(int(r), int(y[r]), int(confident[r]), float(self_conf[r]), float(probs[r, confident[r]])) for r in rows]
