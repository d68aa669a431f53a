"""Grouped cross-validation folds for the guard's calibration: what "unseen data" means here.

Leave-one-out rewards pair twins (a safe prompt scored by its own unsafe twin), so it
overstates what happens on new data. Here prompts linked by a pair (a safe prompt and its
unsafe twin, a contrast set's variants) always fall in the same fold, and every dataset is
spread over the folds, so each fold sees both labels. Whole datasets held out are what
`evaluate --by-dataset` measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

N_FOLDS = 5


def pair_groups(prompt_ids: np.ndarray, links: list[tuple[int, int]]) -> np.ndarray:
    """Per row: a group number; rows linked (directly or through others) share one. Union-find."""
    ids = [int(i) for i in prompt_ids]
    pos = {pid: n for n, pid in enumerate(ids)}
    parent = list(range(len(ids)))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a, b in links:
        if a in pos and b in pos:
            ra, rb = find(pos[a]), find(pos[b])
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(n) for n in range(len(ids))], dtype=np.int64)


@dataclass
class Folds:
    fold: np.ndarray  # per row: fold number
    names: list[str]  # per fold: what it holds

    @property
    def count(self) -> int:
        return len(self.names)


def dataset_folds(datasets: list[str], groups: np.ndarray, is_unsafe: np.ndarray, *, n_folds: int = N_FOLDS) -> Folds:
    """`n_folds` folds, each holding about 1/n_folds of every dataset; a pair group goes whole into
    one fold (with its first row's dataset). Deterministic (seeded by the data's size)."""
    groups = np.asarray(groups)
    first_row: dict[int, int] = {}
    for n, g in enumerate(groups.tolist()):
        first_row.setdefault(g, n)
    unit = np.array([datasets[first_row[g]] or "(no dataset)" for g in groups.tolist()], dtype=object)
    fold = np.full(len(groups), -1, dtype=np.int64)
    for name in sorted(set(unit.tolist())):
        rows = np.flatnonzero(unit == name)
        uniq = np.unique(groups[rows])
        # groups dealt round-robin in a seeded order: folds of similar size, pairs kept together
        order = np.random.default_rng(len(uniq)).permutation(len(uniq))
        part = {int(g): int(i % n_folds) for i, g in enumerate(uniq[order])}
        fold[rows] = [part[int(g)] for g in groups[rows]]
    return Folds(fold=fold, names=[f"fold {i + 1}/{n_folds}" for i in range(n_folds)])
