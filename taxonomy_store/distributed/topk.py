"""`metrics --ray`: the exact self-kNN graph (`metrics.similarity.knn`) in blocks of query rows.

The vectors go to the object store once (`ray.put`); each task takes a block of rows and searches
all vectors with `knn_query`, the row itself excluded. Both functions decide in float64 over the
same candidates with ties to the lower row, so the graph equals a local `knn` exactly.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from taxonomy_store.distributed.cluster import RayCluster
from taxonomy_store.metrics.similarity import knn, knn_query, normalise

# Blocks per CPU of the cluster: enough to balance uneven nodes, few enough to keep tasks large.
BLOCKS_PER_CPU = 4
MIN_BLOCK_ROWS = 256


def block_topk(x: np.ndarray, i0: int, i1: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Runs in a Ray worker: rows i0..i1 of the self graph of x (normalised float32)."""
    return knn_query(x[i0:i1], x, k, exclude=np.arange(i0, i1, dtype=np.int64), assume_normalised=True)


class RayTopK:
    """A `knn` with the same signature and result, sharded over the cluster's CPUs."""

    def __init__(self, cluster: RayCluster, *, block_rows: int | None = None):
        self.cluster = cluster
        self.block_rows = block_rows

    def __call__(
        self, x: np.ndarray, k: int, *, progress: Callable[[int, int], None] | None = None, assume_normalised: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        x = x if assume_normalised and x.dtype == np.float32 and x.flags.c_contiguous else normalise(x)
        n = x.shape[0]
        if n <= 1 or int(k) < 1:
            return knn(x, k, assume_normalised=True)  # nothing to share out (and knn's own errors)
        ray = self.cluster.ray()
        b = self.block_rows or max(MIN_BLOCK_ROWS, -(-n // (BLOCKS_PER_CPU * self.cluster.cpus())))
        task = ray.remote(block_topk).options(num_cpus=1)
        shared = ray.put(x)
        refs = {task.remote(shared, i0, min(n, i0 + b), int(k)): i0 for i0 in range(0, n, b)}
        idx = np.full((n, int(k)), -1, dtype=np.int64)
        sims = np.full((n, int(k)), -np.inf)
        pending, done = list(refs), 0
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            bi, bs = self.cluster.get(ray, ready[0])
            i0 = refs[ready[0]]
            idx[i0 : i0 + bi.shape[0]], sims[i0 : i0 + bi.shape[0]] = bi, bs
            done += 1
            if progress:
                progress(done, len(refs))
        return idx, sims

