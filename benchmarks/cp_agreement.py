"""CP@10 with approximate neighbours against exact, on the same store in the same run (issue 24: within
0.005 of exact on a 100k subset), and the agreement of the two detection graphs on sampled queries.

One generated store (`_generated.realistic`, hashing:384) of --rows prompts; CP@10 and the suspects'
detection graph computed with the approximate path forced (TSTORE_APPROX_FROM below the size), then
with `--exact`. Prints one JSON object.

    python benchmarks/cp_agreement.py [--rows 100000] [--queries 10000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _generated  # noqa: E402
from _machine import cpu_model  # noqa: E402
from million import uptime  # noqa: E402

ENC = "hash384"


def main() -> None:

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=10_000)
    a = ap.parse_args()
    out: dict = {"rows": a.rows, "machine": cpu_model(), "uptime_before": uptime()}
    with tempfile.TemporaryDirectory(prefix="cp_agreement_") as tmp:
        store = _generated.hashing_store(Path(tmp), a.rows, ENC)
        graphs = {}
        for mode in ("approx", "exact"):
            st = store.neighbours.settings
            st.approx_from, st.exact = (min(10_000, a.rows // 4), False) if mode == "approx" else (st.approx_from, True)
            t0 = time.perf_counter()
            (run,) = store.metric_runs.compute("cp", encoder=ENC, k=10, taxonomy="do-not-answer")
            out[f"cp_{mode}_s"] = round(time.perf_counter() - t0, 2)
            out[f"cp@10_{mode}"] = run.values["cp@10_macro"]
            g = run.details.get("graph", {})
            out[f"cp_graph_{mode}"] = {k: v for k, v in g.items() if k in ("exact", "source", "rows", "index")}
            pool = store.neighbours.pool(ENC)
            member = np.isin(pool.labels(), ["safe", "unsafe"])
            t0 = time.perf_counter()
            ids, graphs[mode] = store.neighbours.pool_graph(pool, "detect", member, 10)
            out[f"detect_graph_{mode}_s"] = round(time.perf_counter() - t0, 2)
        out["cp@10_difference"] = round(abs(out["cp@10_approx"] - out["cp@10_exact"]), 5)
        ga, ge = graphs["approx"], graphs["exact"]
        rows = np.sort(np.random.default_rng(1).choice(len(ge.idx), size=min(a.queries, len(ge.idx)), replace=False))
        kth = ge.sims[rows, 9:10]
        hits = (ga.sims[rows, :10] >= kth - 1e-9).sum(axis=1)
        out["detect_agreement_recall@10"] = float(np.minimum(hits, 10).sum() / (10 * len(rows)))
        out["agreement_queries"] = int(len(rows))
        out["detect_rows_identical"] = float((np.sort(ga.idx[rows, :10], 1) == np.sort(ge.idx[rows, :10], 1)).all(1).mean())
        store.close()
    out["uptime_after"] = uptime()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
