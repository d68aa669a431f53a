"""How the HNSW graph keeps its vectors: float32 (faiss `IndexHNSWFlat`, the baseline), float16
(`IndexHNSWSQ` QT_fp16, what `neighbours/approximate.py` builds) and 8-bit (`QT_8bit`), on the
hashing:384 vectors of generated prompts, measured in the same run.

For each kind: the build time, and at each efSearch the walk time per query (the best of two
passes over --queries seeded rows, default 10,000, a batch on all cores, 48 candidates each) and recall@10 (ties counted) after the exact float64
re-rank of the first 15 candidates, as the product does, against exact top-10. Ratios are against
float32 at the same efSearch.

    python benchmarks/hnsw_storage.py ROWS [--ef 183,275,413] [--queries 10000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _generated  # noqa: E402
from _machine import cpu_model  # noqa: E402
from million import uptime  # noqa: E402

KINDS = ("float32", "float16", "int8")
CANDIDATES = 48
RERANK = 15


def _index(kind: str, d: int, m: int):
    import faiss

    if kind == "float32":
        return faiss.IndexHNSWFlat(d, m, faiss.METRIC_INNER_PRODUCT)
    qt = {"float16": faiss.ScalarQuantizer.QT_fp16, "int8": faiss.ScalarQuantizer.QT_8bit}[kind]
    return faiss.IndexHNSWSQ(d, qt, m, faiss.METRIC_INNER_PRODUCT)


def reranked_recall(x: np.ndarray, rows: np.ndarray, found: np.ndarray, exact_sims: np.ndarray) -> float:
    """Recall@10 after re-scoring each row's first RERANK candidates (itself left out) exactly."""
    from taxonomy_store.neighbours.approximate import recall_at_k

    sims = np.full((len(rows), exact_sims.shape[1]), -np.inf)
    for r, (row, cand) in enumerate(zip(rows, found)):
        c = cand[(cand >= 0) & (cand != row)][:RERANK]
        s = np.sort(x[c].astype(np.float64) @ x[row].astype(np.float64))[::-1][:exact_sims.shape[1]]
        sims[r, :len(s)] = s
    return recall_at_k(sims, exact_sims)


def main() -> None:
    from taxonomy_store.backend.hashing_encoder import HashingEncoder
    from taxonomy_store.metrics.similarity import knn_query
    from taxonomy_store.neighbours.approximate import EF_CONSTRUCTION, HNSW_M

    ap = argparse.ArgumentParser()
    ap.add_argument("rows", type=int)
    ap.add_argument("--ef", default="183,275,413")
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("--out")
    a = ap.parse_args()
    texts = list(dict.fromkeys(r[1] for r in _generated.realistic(a.rows, seed=0)))  # the store keeps distinct texts
    x = HashingEncoder(384).encode(texts).astype(np.float32)
    rows = np.sort(np.random.default_rng(0).choice(len(x), a.queries, replace=False))
    _i, exact_sims = knn_query(x[rows], x, 10, exclude=rows, assume_normalised=True)
    out: dict = {"machine": f"{cpu_model()}, {os.cpu_count()} cores", "rows": a.rows, "distinct": len(x),
                 "M": HNSW_M, "efConstruction": EF_CONSTRUCTION, "queries": a.queries, "rerank": RERANK,
                 "uptime_before": uptime(), "kinds": {}}
    for kind in KINDS:
        index = _index(kind, x.shape[1], HNSW_M)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        t0 = time.perf_counter()
        if not index.is_trained:
            index.train(x[:100_000])
        index.add(x)
        fig = {"build_s": round(time.perf_counter() - t0, 1), "ef": {}}
        for ef in (int(e) for e in a.ef.split(",")):
            index.hnsw.efSearch = ef
            dt = []
            for _pass in range(2):
                t0 = time.perf_counter()
                _d, found = index.search(x[rows], CANDIDATES)
                dt.append(time.perf_counter() - t0)
            fig["ef"][ef] = {"ms_per_query": round(min(dt) / len(rows) * 1000, 3),
                             "recall@10_reranked": round(reranked_recall(x, rows, found, exact_sims), 4)}
        out["kinds"][kind] = fig
        print(kind, json.dumps(fig), file=sys.stderr, flush=True)
        del index
    base = out["kinds"]["float32"]
    for kind, fig in out["kinds"].items():
        fig["build_speedup_vs_float32"] = round(base["build_s"] / fig["build_s"], 2)
        for ef, f in fig["ef"].items():
            f["walk_speedup_vs_float32"] = round(base["ef"][ef]["ms_per_query"] / f["ms_per_query"], 2)
    out["uptime_after"] = uptime()
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
