"""HNSW parameters on the hashing:384 vectors of generated prompts: build time and recall@10 (ties
counted) of faiss `IndexHNSWFlat` at several efSearch, against exact top-10 of 1,000 seeded rows,
and the per-query time of a batch of 1,000 queries on all cores. The figures behind
`neighbours/approximate.py`'s HNSW_M and EF_CONSTRUCTION (docs/BENCHMARKS.md, "A million prompts").

    python benchmarks/hnsw_params.py ROWS M EF_CONSTRUCTION
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _generated  # noqa: E402
from million import uptime  # noqa: E402


def main() -> None:
    import faiss

    from taxonomy_store.backend.hashing_encoder import HashingEncoder
    from taxonomy_store.metrics.similarity import knn_query
    from taxonomy_store.neighbours.approximate import recall_at_k

    n, m, efc = (int(a) for a in sys.argv[1:4])
    texts = list(dict.fromkeys(r[1] for r in _generated.realistic(n, seed=0)))  # the store keeps distinct texts
    x = HashingEncoder(384).encode(texts).astype(np.float32)
    out: dict = {"rows": n, "distinct": len(texts), "M": m, "efConstruction": efc, "uptime_before": uptime()}
    rows = np.sort(np.random.default_rng(0).choice(len(x), 1000, replace=False))
    _i, es = knn_query(x[rows], x, 10, exclude=rows, assume_normalised=True)
    index = faiss.IndexHNSWFlat(384, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = efc
    t0 = time.perf_counter()
    index.add(x)
    out["build_s"] = round(time.perf_counter() - t0, 1)
    out["ef"] = {}
    for ef in (32, 64, 128, 256):
        index.hnsw.efSearch = ef
        t0 = time.perf_counter()
        d, i = index.search(x[rows], 11)
        dt = time.perf_counter() - t0
        sims = -np.sort(-np.where(i == rows[:, None], -np.inf, d), axis=1)[:, :10]
        hits = (sims >= es[:, -1:] - 1e-6).sum(axis=1)  # float32 faiss scores against float64 exact: 1e-6
        out["ef"][ef] = {"recall": round(recall_at_k(sims, es, eps=1e-6), 4), "ms_per_query": round(dt, 3),
                         "rows_with_no_true_neighbour": int((hits == 0).sum())}
    out["uptime_after"] = uptime()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
