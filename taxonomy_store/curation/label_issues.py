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
# Rows each fold's probe is fitted on, at most: a 384-dimensional linear probe gains nothing from
# more, and the fit grows with them (100,000 prompts: minutes instead of seconds).
FIT_ROWS = 20_000


@dataclass(frozen=True)
class Issue:
    row: int  # row in the caller's arrays
    given: int  # class index of the stored label
    suggested: int  # class index confident learning assigns
    p_given: float  # out-of-sample probability of the stored label (self-confidence)
    p_suggested: float


def fold_of_each_row(y: np.ndarray, groups: np.ndarray | None, folds: int, seed: int) -> np.ndarray:
    """The fold each row is held out in: whole groups per fold (each group to a random fold:
    sklearn's group splitters took ten times longer here), else stratified by label."""
    from sklearn.model_selection import StratifiedKFold

    if groups is not None:
        order = np.random.default_rng(seed).permutation(int(groups.max()) + 1)
        return order[groups] % folds
    fold = np.empty(len(y), dtype=np.int64)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for f, (_train, test) in enumerate(cv.split(np.zeros((len(y), 1)), y)):
        fold[test] = f
    return fold


def fit_sample(train: np.ndarray, y: np.ndarray, cap: int, rng: np.random.Generator) -> np.ndarray:
    """At most `cap` of the training rows, each label kept in its share (all of them when fewer)."""
    if len(train) <= cap:
        return train
    picked = []
    for label in np.unique(y[train]):
        rows = train[y[train] == label]
        picked.append(rng.choice(rows, size=max(1, round(cap * len(rows) / len(train))), replace=False))
    return np.sort(np.concatenate(picked))


def out_of_sample_probabilities(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None,
                                *, folds: int = FOLDS, seed: int = SEED, fit_rows: int = FIT_ROWS) -> np.ndarray:
    """(n, classes) probabilities, each row from a logistic probe fitted without that row's fold.

    `groups` keeps prompts that belong together (the two sides of a pair) in one fold, so a
    twin never judges its own partner. Each fold's probe is fitted on at most `fit_rows` of the
    other folds' rows (a stratified, seeded sample; every row on a store below that size); every
    held-out row is still scored, so each probability stays out of sample. One BLAS thread: the
    fit is matrix-vector products, which threads only slow down (five times on a busy machine)."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    smallest = int(np.bincount(y).min())
    folds = max(2, min(folds, smallest))
    fold = fold_of_each_row(y, groups, folds, seed)
    classes = int(y.max()) + 1
    probs = np.zeros((len(y), classes))
    rng = np.random.default_rng(seed)
    with threadpool_limits(limits=1, user_api="blas"):
        for f in range(folds):
            held = fold == f
            if not held.any():
                continue
            train = fit_sample(np.flatnonzero(~held), y, fit_rows, rng)
            probe = LogisticRegression(C=C, max_iter=2000).fit(x[train], y[train])
            probs[np.ix_(held, probe.classes_)] = probe.predict_proba(x[held])
    return probs


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
