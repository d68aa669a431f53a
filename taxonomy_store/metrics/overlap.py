"""Near-duplicate groups: pure numpy, blocked so no N x N matrix is ever held in memory.

`near_pairs` walks the upper triangle of the similarity matrix in row blocks against column
blocks and keeps only the pairs at or above the threshold; `union_groups` joins pairs into
groups with a union-find (path halving, smaller root wins, so groups are deterministic).
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

Progress = Callable[[str, int, int], None] | None


def near_pairs(vectors: np.ndarray, threshold: float, *, block: int = 2048, progress: Progress = None) -> np.ndarray:
    """(m, 2) row pairs i < j whose cosine similarity is >= threshold; vectors L2-normalised.

    Memory: one block x block float32 tile at a time (16 MB at the default block)."""
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    n = len(x)
    found: list[np.ndarray] = []
    starts = list(range(0, n, block))
    total = len(starts) * (len(starts) + 1) // 2
    done = 0
    for bi, i0 in enumerate(starts):
        xi = x[i0:i0 + block]
        for j0 in starts[bi:]:
            tile = xi @ x[j0:j0 + block].T
            if j0 == i0:
                tile[np.tril_indices(len(xi), m=tile.shape[1])] = -np.inf
            hit = tile >= threshold
            rows = np.flatnonzero(hit.any(axis=1))  # nonzero() over only the rows with a hit: most have none
            if len(rows):
                r, c = np.nonzero(hit[rows])
                found.append(np.stack([rows[r] + i0, c + j0], axis=1).astype(np.int64))
            done += 1
            if progress is not None:
                progress("near-duplicates", done, total)
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


def union_groups(n: int, pairs: Iterable[tuple[int, int]] | np.ndarray) -> np.ndarray:
    """A group id per item (the smallest item of its group): items joined by pairs share one."""
    parent = np.arange(n, dtype=np.int64)

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = int(parent[a])
        return a

    for a, b in np.asarray(pairs, dtype=np.int64).reshape(-1, 2):
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return np.array([find(i) for i in range(n)], dtype=np.int64)
