"""`--ray` throughput: `embed` and the exact self-kNN graph, local against a Ray cluster of 1 and 2
workers, on the same data in the same run.

Clusters are started here on loopback (tests/ray_cluster.py): a head that offers no CPU (so it
runs no actor or task) and 1 or 2 workers of one CPU each; a worker's encoder and numpy then run
one thread (Ray sets OMP_NUM_THREADS=1 for a one-CPU worker), while the local run uses every core.
On a 2-core machine, 2 workers are the whole machine and the calling process (the writer) shares
it with them, so the figures show the overhead of sharding, not the gain a real cluster gives;
on a cluster, each node adds its own cores.

    python benchmarks/ray_throughput.py [--texts 1000] [--encoder minilm|hashing:384] [--rows 20000] [--k 20] [--json]

With --json the last line is run_all.py's list of rows (it is not in run_all's default list: it
needs the `ray` extra and takes minutes; `run_all.py --only ray_throughput`).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import REPO, load_average  # noqa: E402
from embed import fill_store, load_texts  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
from ray_cluster import LocalRayCluster  # noqa: E402



def embed_seconds(template: Path, work: Path, encoder: str, address: str | None) -> tuple[float, object]:
    """Wall seconds of one embed of every prompt of a fresh copy of the template store."""
    from taxonomy_store.store import Store

    path = Path(shutil.copytree(template, work))
    with Store.open(path) as store:
        if address:
            store.use_ray(address)
        store.encoders.get(encoder)
        t0 = time.perf_counter()
        summary = store.embeddings.embed(encoder)
        seconds = time.perf_counter() - t0
        vectors = store.embeddings.load_vectors(encoder)
    shutil.rmtree(path)
    return seconds, (summary.embedded, vectors)


def make_template(path: Path, texts: list[str], model_ref: str | None) -> str:
    from taxonomy_store.store import init_store

    with init_store(path) as store:
        fill_store(store, texts)
        if model_ref:
            store.encoders.add("bench", model_ref)
            return "bench"
    return "minilm"


def knn_seconds(x, k: int, address: str | None):
    import numpy as np

    from taxonomy_store.metrics.similarity import knn

    t0 = time.perf_counter()
    if address:
        from taxonomy_store.distributed.cluster import RayCluster
        from taxonomy_store.distributed.topk import RayTopK

        idx, sims = RayTopK(RayCluster(address))(x, k, assume_normalised=True)
    else:
        idx, sims = knn(x, k, assume_normalised=True)
    return time.perf_counter() - t0, np.asarray(idx)


def run_config(name, address, template, tmp, encoder, x, k, results, reference):
    import numpy as np

    s, (n, vectors) = embed_seconds(template, Path(tmp) / f"embed_{name}", encoder, address)
    ks, idx = knn_seconds(x, k, address)
    if reference:
        ref_vectors, ref_idx = reference
        same_rows = np.array_equal(vectors.prompt_ids, ref_vectors.prompt_ids)
        max_diff = float(np.abs(vectors.vectors - ref_vectors.vectors).max())
        identical_graph = bool(np.array_equal(idx, ref_idx))
    else:
        reference.extend([vectors, idx])
        same_rows, max_diff, identical_graph = True, 0.0, True
    results[name] = {"embed_sentences_per_s": round(n / s, 1), "embed_seconds": round(s, 2),
                     "knn_rows_per_s": round(len(x) / ks, 1), "knn_seconds": round(ks, 2),
                     "same_rows": same_rows, "max_vector_diff": max_diff, "identical_knn": identical_graph}
    print(f"{name}: embed {n / s:.1f} sentences/s, knn {len(x) / ks:.0f} rows/s ({load_average()})", file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--encoder", default="minilm", help="minilm (the store's default) or a model ref such as hashing:384")
    ap.add_argument("--rows", type=int, default=20000, help="vectors of the kNN graph (random, 384-d)")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import numpy as np

    from taxonomy_store.metrics.similarity import normalise

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    texts = load_texts(args.texts)
    x = normalise(np.random.default_rng(0).normal(size=(args.rows, 384)).astype(np.float32))
    results: dict[str, dict] = {}
    reference: list = []
    with tempfile.TemporaryDirectory(prefix="tstore-bench-ray-") as tmp:
        template = Path(tmp) / "template"
        encoder = make_template(template, texts, None if args.encoder == "minilm" else args.encoder)
        run_config("local", None, template, tmp, encoder, x, args.k, results, reference)
        for workers in (1, 2):
            cluster = LocalRayCluster(workers, head_cpus=0, object_store_bytes=max(200_000_000, 3 * x.nbytes)).start()
            try:
                run_config(f"ray_{workers}_workers", cluster.address, template, tmp, encoder, x, args.k, results, reference)
            finally:
                cluster.stop()
        # Local once more: the machine is shared, and its load drifts over a run of minutes.
        run_config("local_again", None, template, tmp, encoder, x, args.k, results, reference)
    best = {m: max(results["local"][m], results["local_again"][m]) for m in ("embed_sentences_per_s", "knn_rows_per_s")}
    out = {"texts": len(texts), "encoder": args.encoder, "knn_rows": args.rows, "k": args.k, "cpus": os.cpu_count(),
           "load": load_average(), "results": results}
    for name, r in results.items():
        if name.startswith("ray"):  # against the better of the two local runs
            r["embed_ratio_vs_local"] = round(r["embed_sentences_per_s"] / best["embed_sentences_per_s"], 3)
            r["knn_ratio_vs_local"] = round(r["knn_rows_per_s"] / best["knn_rows_per_s"], 3)
    if not args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(json.dumps(out), file=sys.stderr)
    print(json.dumps(rows_of(out, best)))
    return 0


def rows_of(out: dict, best: dict) -> list[dict]:
    """run_all.py's rows: each Ray configuration against the better local run of the same run."""
    rows = []
    for name, r in out["results"].items():
        if not name.startswith("ray"):
            continue
        for what, metric, unit in (("embed", "embed_sentences_per_s", "sentences/s"), ("knn", "knn_rows_per_s", "rows/s")):
            rows.append({
                "benchmark": "ray", "measure": f"{what} on {name.replace('_', ' ')} ({out['cpus']} CPUs, {out['load']})",
                "ours": r[metric], "baseline_name": f"local {what} (same run)", "baseline": best[metric], "unit": unit,
                "ratio": r[f"{what}_ratio_vs_local"], "target": "", "met": None,
            })
        rows.append({
            "benchmark": "ray", "measure": f"{name.replace('_', ' ')}: same rows, vectors within 1e-5, kNN graph identical",
            "ours": r["max_vector_diff"], "baseline_name": "local run", "baseline": 0.0, "unit": "max |diff|", "ratio": None,
            "target": "identical", "met": bool(r["same_rows"] and r["max_vector_diff"] <= 1e-5 and r["identical_knn"]),
        })
    return rows


if __name__ == "__main__":
    sys.exit(main())
