"""Categorical Purity (CP@k), Safe-Embed's measure of how well an encoder keeps harm categories apart.

For each prompt: the share of its k nearest neighbours (cosine, itself excluded) that carry its
category. The graph is built over the prompts under evaluation only (unsafe prompts with a
category at the chosen taxonomy level), so neighbours come from that set. CP per category is the
mean over its prompts; the macro mean averages categories, the micro mean averages prompts.

Because this only needs a neighbour graph and a category array, CP can be recomputed from a
stored graph after label or category edits, without a new similarity pass.

Edge cases: with fewer than k other prompts a row uses the neighbours it has (k_eff = n - 1);
a category with one member scores 0 (no neighbour can share its category).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class PurityResult:
    k: int
    per_prompt: np.ndarray  # (n,) share of same-category neighbours, nan where a row has none
    per_category: dict[str, float]
    counts: dict[str, int]
    macro: float
    micro: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def primary_name(self) -> str:
        return f"cp@{self.k}_macro"

    def to_metrics(self) -> dict[str, float]:
        """Flat snake_case values: cp@k_macro (primary), cp@k_micro, cp@k.<category>."""
        out = {f"cp@{self.k}_macro": self.macro, f"cp@{self.k}_micro": self.micro}
        for cat, v in self.per_category.items():
            out[f"cp@{self.k}.{cat}"] = v
        return out


def same_share(neighbours: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Per row: the share of its first k neighbours (-1 = none) whose value equals its own."""
    nb = np.asarray(neighbours)[:, :k]
    values = np.asarray(values)
    valid = nb >= 0
    nb_vals = values[np.where(valid, nb, 0)]
    same = (nb_vals == values[:, None]) & valid
    n_valid = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_valid > 0, same.sum(axis=1) / np.maximum(n_valid, 1), np.nan)


def categorical_purity(neighbours: np.ndarray, categories: np.ndarray, k: int = 10) -> PurityResult:
    """CP@k from a kNN graph (rows ordered nearest first, -1 padding) and each row's category."""
    categories = np.asarray(categories)
    if neighbours.shape[0] != categories.shape[0]:
        raise ValueError("the graph and the categories must have the same number of rows")
    if neighbours.shape[1] < k:
        raise ValueError(f"the graph holds {neighbours.shape[1]} neighbours per row, CP@{k} needs {k}")
    share = same_share(neighbours, categories, k)
    cats, inverse = np.unique(categories, return_inverse=True)
    ok = ~np.isnan(share)
    sums = np.bincount(inverse[ok], weights=share[ok], minlength=cats.size)
    counts = np.bincount(inverse[ok], minlength=cats.size)
    per_cat = {str(c): float(sums[i] / counts[i]) for i, c in enumerate(cats) if counts[i]}
    macro = float(np.mean(list(per_cat.values()))) if per_cat else float("nan")
    micro = float(share[ok].mean()) if ok.any() else float("nan")
    return PurityResult(
        k=k,
        per_prompt=share,
        per_category=per_cat,
        counts={str(c): int(counts[i]) for i, c in enumerate(cats)},
        macro=macro,
        micro=micro,
    )
