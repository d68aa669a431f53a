"""Baseline similarity b of an encoder: the mean cosine between unrelated prompts (anisotropy).

Safe-Embed uses a 500 x 500 cross sample of BeaverTails prompts (b = 0.092 for
all-mpnet-base-v2). Here: two independent seeded samples A and B of up to `sample` rows each,
half safe and half unsafe where the labels allow (the rest filled from the other rows), and b
is the mean cosine over all pairs (a, b) in A x B with a != b (self-pairs excluded).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from taxonomy_store.metrics.similarity import normalise


def _draw(rng: np.random.Generator, n: int, m: int, labels: np.ndarray | None) -> np.ndarray:
    if labels is None:
        return np.sort(rng.choice(n, size=m, replace=False))
    safe = np.flatnonzero(labels == "safe")
    unsafe = np.flatnonzero(labels == "unsafe")
    if safe.size == 0 or unsafe.size == 0:
        return np.sort(rng.choice(n, size=m, replace=False))
    half = m // 2
    take_u = min(unsafe.size, m - min(safe.size, half))
    take_s = min(safe.size, m - take_u)
    chosen = np.concatenate([rng.choice(safe, size=take_s, replace=False), rng.choice(unsafe, size=take_u, replace=False)])
    if chosen.size < m:
        rest = np.setdiff1d(np.arange(n), chosen)
        chosen = np.concatenate([chosen, rng.choice(rest, size=m - chosen.size, replace=False)])
    return np.sort(chosen)


def estimate_baseline(x: np.ndarray, labels: np.ndarray | None = None, *, sample: int = 500, seed: int = 0) -> dict[str, Any]:
    """{'baseline': b, 'pairs': ..., 'sample_a': ..., 'sample_b': ..., 'seed': ..., 'method': ...}."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d array of vectors, got shape {x.shape}")
    n = x.shape[0]
    if n < 2:
        raise ValueError("at least two vectors are needed to estimate a baseline similarity")
    m = min(sample, n)
    lab = None if labels is None else np.asarray(labels).astype(str)
    rng = np.random.default_rng(seed)
    a = _draw(rng, n, m, lab)
    b = _draw(rng, n, m, lab)
    # only the sampled rows are normalised (row by row, as normalise(x) would: the same values),
    # not a copy of every vector (1.5 GB at a million)
    sims = normalise(x[a]).astype(np.float64) @ normalise(x[b]).astype(np.float64).T
    self_pairs = a[:, None] == b[None, :]
    total = sims.sum() - sims[self_pairs].sum()
    pairs = sims.size - int(self_pairs.sum())
    out = {
        "baseline": float(total / pairs),
        "pairs": int(pairs),
        "sample_a": int(a.size),
        "sample_b": int(b.size),
        "seed": int(seed),
        "method": f"mean cosine over a seeded {a.size} x {b.size} cross sample, self-pairs excluded",
        "sample_rows": np.union1d(a, b).tolist(),  # the rows it was estimated from (to pin it to them)
    }
    if lab is not None:
        out["safe_in_sample"] = int((lab[a] == "safe").sum() + (lab[b] == "safe").sum())
        out["unsafe_in_sample"] = int((lab[a] == "unsafe").sum() + (lab[b] == "unsafe").sum())
    return out
