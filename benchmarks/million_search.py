"""The search alone at 1M: single-query latency of exact top-10 against the faiss index (tuned to
recall@10 >= 0.99) over the hashing:384 vectors of 1M generated prompts, plus build and tune costs
and the index's memory. For when the whole store cannot be built in the time there is
(benchmarks/million.py builds it); prints one JSON object.

    python benchmarks/million_search.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _generated  # noqa: E402
from _machine import cpu_model  # noqa: E402
from million import uptime  # noqa: E402


def main() -> None:
    from taxonomy_store.backend.hashing_encoder import HashingEncoder
    from taxonomy_store.metrics.similarity import knn_query
    from taxonomy_store.neighbours.approximate import AnnIndex

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    a = ap.parse_args()
    out: dict = {"rows": a.rows, "machine": cpu_model(), "uptime_before": uptime()}

    def stage(name, fn):
        t0, c0 = time.perf_counter(), time.process_time()
        r = fn()
        out[name + "_s"], out[name + "_cpu_s"] = round(time.perf_counter() - t0, 3), round(time.process_time() - c0, 3)
        print(json.dumps({name: out[name + "_s"], "cpu": out[name + "_cpu_s"], "uptime": uptime()}), file=sys.stderr, flush=True)
        return r

    texts = [r[1] for r in _generated.realistic(a.rows, seed=0)]
    x = stage("encode", lambda: HashingEncoder(384).encode(texts).astype(np.float32))
    queries = HashingEncoder(384).encode([r[1] for r in _generated.realistic(101, seed=99)]).astype(np.float32)
    ids = np.arange(a.rows, dtype=np.int64)
    keys = np.array([str(i).encode() for i in ids])
    ann = stage("build", lambda: AnnIndex.build(ids, keys, x))
    ann.params["nprobe"] = max(1, int(ann.params["nlist"]) // 32)
    stage("tune", lambda: ann.tune(x))
    out["index"] = dict(ann.params)

    def latencies(fn) -> list[float]:
        fn(queries[:1])
        ts = []
        for q in queries[1:]:
            t0 = time.perf_counter()
            fn(q[None, :])
            ts.append(1000 * (time.perf_counter() - t0))
        return ts

    ex = latencies(lambda q: knn_query(q, x, 10, assume_normalised=True))
    ap_ = latencies(lambda q: ann.search(q, x, 10))
    out.update(exact_p50_ms=round(float(np.median(ex)), 2), approx_p50_ms=round(float(np.median(ap_)), 2),
               exact_p95_ms=round(float(np.percentile(ex, 95)), 2), approx_p95_ms=round(float(np.percentile(ap_, 95)), 2))
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)
    out["uptime_after"] = uptime()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
