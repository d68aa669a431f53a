"""Neighbours labeled in another taxonomy, counted in the vote through an accepted crosswalk.

`store.py` hands the guard a lookup of accepted crosswalk rows (source node id -> [(target node
id, weight)]); with no accepted row the neighbours pass through unchanged, so nothing changes.
A neighbour mapped onto several targets splits its similarity weight by the rows' weights, so the
neighbourhood's total weight (a vote's denominator) stays the same.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from taxonomy_store.catalog import NodeInfo

Mapping = dict[int, list[tuple[int, float]]]


def mapped_neighbours(cat_ids: list[int | None], weights: np.ndarray, nodes: dict[int, NodeInfo], taxonomy: str,
                      mapping: Mapping) -> tuple[list[int | None], np.ndarray, list[str]]:
    """(category ids, weights, notes) with each other-taxonomy neighbour replaced by its accepted targets."""
    if not mapping:
        return cat_ids, weights, []
    out_ids: list[int | None] = []
    out_w: list[float] = []
    used: Counter = Counter()
    for cid, w in zip(cat_ids, weights):
        node = nodes.get(cid) if cid is not None else None
        targets = None
        if node is not None and node.taxonomy != taxonomy:
            # the deepest ancestor (or the node itself) with an accepted row
            targets = next((mapping[a] for a in reversed(node.id_path) if a in mapping), None)
        if not targets:
            out_ids.append(cid)
            out_w.append(float(w))
            continue
        total = sum(t_w for _t, t_w in targets) or float(len(targets))
        for t, t_w in targets:
            out_ids.append(t)
            out_w.append(float(w) * ((t_w or 1.0) / total if total else 1.0 / len(targets)))
        if node is not None:
            used[node.taxonomy] += 1
    notes = [f"{n} neighbour{'s' if n > 1 else ''} labeled in {tax!r} voted through the accepted crosswalk onto {taxonomy!r}"
             for tax, n in sorted(used.items())]
    return out_ids, np.asarray(out_w, dtype=np.float64), notes
