"""A million prompts on one machine: every cost of a generated store at 100k, 300k and 1M prompts.

The store is `_generated.realistic` (templates and topic words per Do-Not-Answer specific harm,
filler words, planted exact and near duplicates, 1 % label noise; labels and categories over the
Do-Not-Answer tree), embedded with the `hashing:384` development encoder. Each size runs in a
fresh process (so peak RSS is that size's) and measures, in order:

  import (store.imports.import_file)            target <= 180 s at 1M
  embed hashing:384                              (no target: the encoder's own cost is printed beside)
  pool load (SQL rows + Chroma vectors)
  CP@10 + the suspects graph (metric cp, review.suspects by label)   target <= 600 s at 1M
  agreement of the graph with exact neighbours on >= 10,000 sampled rows (recall@10)   target >= 0.99
  query p50 in a fresh process (100 queries, one at a time, after the first)  target <= 50 ms
    (and, labelled `_embedding_process`, in the process that imported and embedded)
  calibrate (sampled above calibration.QUERY_SAMPLE reference prompts)  target <= 300 s
  export (CSV)
  peak RSS (getrusage)                           target <= 8 GB

Baselines measured in the same run: the exact path on the same data (`--exact` sizes, at 100k:
CP@10 must stay within 0.005), and, with --main DIR, today's main checkout on the same 100k data.
The exponent of each cost is the slope of log t against log n over the sizes measured.

    python benchmarks/million.py [--sizes 100000,1000000] [--exact-sizes 100000] [--main /work/main] [--skip cp] [--json]
    python benchmarks/million.py --child N --mode approx|exact|main   (one size; prints one JSON line)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import REPO, cpu_model  # noqa: E402

ENC = "h384"
AGREEMENT_QUERIES = 10_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"load average {os.getloadavg()}"


def timed(out: dict, name: str, fn):
    """Wall seconds (`name_s`) and this process's CPU seconds (`name_cpu_s`, all threads): on a machine
    shared with others the CPU time says what the stage costs, the wall time what it took."""
    log(f"  {name} ...")
    t0, c0 = time.perf_counter(), time.process_time()
    r = fn()
    out[name + "_s"] = round(time.perf_counter() - t0, 3)
    out[name + "_cpu_s"] = round(time.process_time() - c0, 3)
    out[name + "_peak_rss_so_far_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)
    log(f"  {name}: {out[name + '_s']} s wall, {out[name + '_cpu_s']} s CPU ({uptime()})")
    return r


def _kept_store(keep: Path, n: int, out: dict):
    """The store kept at keep/store from an earlier run of this size (imported and embedded), with its
    derived caches (kNN graphs, faiss indexes) removed so every graph and index is built again; None
    when there is none yet. The import and embed figures are those of the run that made it."""
    import shutil

    from taxonomy_store.store import Store

    done = keep / f"embedded-{n}.json"
    if not done.is_file():
        return None
    shutil.rmtree(keep / "store" / "cache", ignore_errors=True)
    out.update({f"{k}_kept_from_earlier_run": v for k, v in json.loads(done.read_text()).items()})
    return Store.open(keep / "store")


def child(n: int, mode: str, csv_path: Path, skip: frozenset[str] = frozenset(), keep: Path | None = None) -> dict:
    """One size, one mode, in this process: the figures as a dict (stages in `skip` not run).

    keep: build the store under this folder and keep it; a later run of the same size reuses it
    (import and embed not repeated, their figures carried over and labelled so)."""
    import _generated
    from taxonomy_store.store import init_store

    out: dict = {"rows": n, "mode": mode}
    with tempfile.TemporaryDirectory(prefix=f"million{n}_") as tmp_dir:
        tmp = str(keep) if keep is not None else tmp_dir
        store = _kept_store(keep, n, out) if keep is not None else None
        if store is None:
            store = init_store(Path(tmp) / "store")
            store.encoders.add(ENC, "hashing:384")
            store.taxonomies.load("do-not-answer")
            if mode == "exact" and hasattr(store, "exact_neighbours"):
                store.exact_neighbours()
            imp = timed(out, "import", lambda: store.imports.import_file(csv_path, taxonomy="do-not-answer"))
            out["imported"] = getattr(imp, "added", None)
            timed(out, "embed", lambda: store.embeddings.embed(ENC))
            if keep is not None:
                (keep / f"embedded-{n}.json").write_text(json.dumps({k: out[k] for k in out if k.startswith(("import", "embed"))}))
        elif mode == "exact" and hasattr(store, "exact_neighbours"):
            store.exact_neighbours()
        texts = [r[1] for r in _generated.realistic(2000, seed=99)]
        from taxonomy_store.backend.hashing_encoder import HashingEncoder

        t0 = time.perf_counter()
        HashingEncoder(384).encode(texts)
        out["encoder_only_per_1000_s"] = round((time.perf_counter() - t0) / 2, 4)
        pool = timed(out, "pool_load", lambda: store.neighbours.pool(ENC))
        out["pool_rows"] = len(pool)
        if "cp" not in skip:
            cp = timed(out, "cp", lambda: store.metric_runs.compute("cp", encoder=ENC, k=10, taxonomy="do-not-answer"))
            run = cp[0]
            out["cp@10_macro"] = run.values.get("cp@10_macro")
            out["cp_graph"] = {k: v for k, v in run.details.get("graph", {}).items() if k != "index"}
            out["cp_index"] = run.details.get("graph", {}).get("index")
            sus = timed(out, "suspects", lambda: store.review.suspects(ENC, by="label", k=10, limit=100))
            out["suspects_found"] = len(sus)
            out["cp_plus_suspects_s"] = round(out["cp_s"] + out["suspects_s"], 3)
            if getattr(pool, "_ann", None) is not None:  # walks shared by the two graphs, and rows walked again under a filter
                out["walks"] = dict(pool._ann.walk_counts)
            if mode != "main" and "agreement" not in skip:
                timed(out, "agreement", lambda: out.update(agreement(store, pool)))
        if "query" not in skip:
            # A user's query runs in its own process: the target figure is timed in a fresh one on
            # this store. The process that just imported and embedded is much slower (324 vs 15 ms
            # p50 at 300k, benchmarks/query_fresh.py); its figure is kept beside, labelled.
            out.update(fresh_query_p50(Path(tmp) / "store"))
            out.update({f"{k}_embedding_process": v for k, v in query_p50(store, texts).items()})
        if "calibrate" not in skip:
            cal = timed(out, "calibrate", lambda: store.guard.calibrate(ENC))
            out["calibrate_auroc"] = cal.auroc
            out["calibrate_sampled"] = getattr(cal, "sampled", None)
            out["calibrate_search"] = getattr(cal, "neighbour_search", {"exact": True})
        timed(out, "export", lambda: store.exports.export_prompts(Path(tmp_dir) / "out.csv"))
        store.close()
    out["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, 3)
    return out


def agreement(store, pool) -> dict:
    """recall@10 of the suspects (detection) graph against exact top-10 on sampled rows."""
    from taxonomy_store.metrics.similarity import knn_query_rows

    member = np.isin(pool.labels(), ["safe", "unsafe"])
    ids, g = store.neighbours.pool_graph(pool, "detect", member, 10)
    members = np.flatnonzero(member)
    rows = np.sort(np.random.default_rng(1).choice(len(ids), size=min(AGREEMENT_QUERIES, len(ids)), replace=False))
    # exact top-10 among the members, read a chunk at a time (no copy of every member's vector)
    ei, es = knn_query_rows(pool.vectors[members[rows]], pool.vectors, members, 10, exclude=members[rows])
    ei = np.searchsorted(members, ei)
    gs = g.sims[rows, :10]
    kth = es[:, -1:]
    hits = (gs >= kth - 1e-9).sum(axis=1)
    same_ids = float((np.sort(g.idx[rows, :10], axis=1) == np.sort(ei, axis=1)).all(axis=1).mean())
    return {"agreement_recall@10": float(np.minimum(hits, 10).sum() / (10 * len(rows))), "agreement_queries": int(len(rows)),
            "agreement_rows_identical": same_ids, "detect_graph_exact": bool(g.stats.get("exact", True))}


def fresh_query_p50(store_dir: Path) -> dict:
    """query_p50 in a fresh process that opens the store (its pool from the local vector copy)."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[2]); import _generated, million; "
            "from taxonomy_store.store import Store; s = Store.open(sys.argv[1]); "
            "print(json.dumps(million.query_p50(s, [r[1] for r in _generated.realistic(2000, seed=99)])))")
    r = subprocess.run([sys.executable, "-c", code, str(store_dir), str(Path(__file__).resolve().parent)],
                       stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    if r.returncode != 0:
        return {"query_error": f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


def query_p50(store, texts: list[str]) -> dict:
    t0 = time.perf_counter()
    first = store.guard.query([texts[0]], encoder=ENC)[0]
    warm = time.perf_counter() - t0
    times = []
    for t in texts[1:101]:
        t0 = time.perf_counter()
        store.guard.query([t], encoder=ENC)
        times.append(time.perf_counter() - t0)
    return {"query_first_s": round(warm, 3), "query_p50_ms": round(1000 * float(np.median(times)), 2),
            "query_p95_ms": round(1000 * float(np.percentile(times, 95)), 2),
            "query_search": getattr(first, "neighbour_search", {"exact": True})}


def run_child(n: int, mode: str, csv_path: Path, main: str | None, approx_from: str | None, skip: str = "",
              keep: str | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(main) if mode == "main" else REPO)
    if approx_from:
        env["TSTORE_APPROX_FROM"] = approx_from
    # main runs in its own virtual environment: this checkout's editable install would shadow PYTHONPATH
    python = str(Path(main) / ".venv" / "bin" / "python") if mode == "main" and main else sys.executable
    cmd = [python, str(Path(__file__).resolve()), "--child", str(n), "--mode", mode, "--csv", str(csv_path), "--skip", skip]
    if keep:
        cmd += ["--keep", keep]
    log(f"{n:,} rows, {mode}: {uptime()}")
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        return {"rows": n, "mode": mode, "error": f"exit {r.returncode}"}
    return json.loads(r.stdout.strip().splitlines()[-1])


COSTS = ("import_s", "embed_s", "pool_load_s", "cp_plus_suspects_s", "query_p50_ms", "calibrate_s", "export_s", "peak_rss_gb")
TARGETS = {"import_s": 180, "cp_plus_suspects_s": 600, "query_p50_ms": 50, "calibrate_s": 300, "peak_rss_gb": 8}


def exponents(runs: list[dict]) -> dict[str, float]:
    ok = sorted((r for r in runs if r.get("mode") == "approx" and "error" not in r), key=lambda r: r["rows"])
    out = {}
    for c in COSTS:
        pts = [(math.log(r["rows"]), math.log(max(r[c], 1e-6))) for r in ok if c in r]
        if len(pts) >= 2:
            out[c] = round(float(np.polyfit([p[0] for p in pts], [p[1] for p in pts], 1)[0]), 2)
    return out


def table(runs: list[dict], exps: dict[str, float]) -> str:
    cols = [f"{r['rows']:,} {r['mode']}" for r in runs]
    lines = [f"{'cost':22}" + "".join(f"{c:>20}" for c in cols) + f"{'exponent':>10}{'target@1M':>11}"]
    cpu = tuple(c.replace("_s", "_cpu_s") for c in ("import_s", "embed_s", "pool_load_s", "cp_s", "suspects_s", "calibrate_s", "export_s"))
    for c in COSTS + cpu + ("cp@10_macro", "agreement_recall@10", "query_first_s", "query_p50_ms_embedding_process", "suspects_s", "cp_s"):
        vals = "".join(f"{(r.get(c) if r.get(c) is not None else r.get('error', '-'))!s:>20}" for r in runs)
        lines.append(f"{c:22}{vals}{exps.get(c, ''):>10}{TARGETS.get(c, ''):>11}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100000,300000,1000000")
    ap.add_argument("--exact-sizes", default="100000")
    ap.add_argument("--approx-from", default="50000", help="TSTORE_APPROX_FROM for the approximate runs")
    ap.add_argument("--main", default=None, help="a checkout of today's main: its exact path on the smallest size")
    ap.add_argument("--child", type=int)
    ap.add_argument("--mode", default="approx")
    ap.add_argument("--csv")
    ap.add_argument("--skip", default="", help="stages not run: cp (with suspects and agreement), agreement, query, calibrate")
    ap.add_argument("--keep", default=None, help="a folder: build the approximate run's store there and keep it; "
                    "a later run of the same size reuses it (import and embed not repeated, caches removed)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.mode, Path(a.csv), frozenset(x for x in a.skip.split(",") if x),
                               Path(a.keep) if a.keep else None)))
        return
    import _generated

    before = uptime()
    runs = []
    with tempfile.TemporaryDirectory(prefix="million_csv_") as tmp:
        sizes = [int(s) for s in a.sizes.split(",") if s]
        exact = {int(s) for s in a.exact_sizes.split(",") if s}
        for n in sizes:
            path = _generated.write_rows(Path(tmp) / f"gen{n}.csv", _generated.realistic(n, seed=0))
            if a.main and n == min(sizes):
                runs.append(run_child(n, "main", path, a.main, None))
            if n in exact:
                runs.append(run_child(n, "exact", path, None, None))
            runs.append(run_child(n, "approx", path, None, a.approx_from, a.skip, a.keep))
            path.unlink()
    after = uptime()
    exps = exponents(runs)
    report = {"machine": f"{cpu_model()}, {os.cpu_count()} cores (shared with other engineers)", "uptime_before": before,
              "uptime_after": after, "approx_from": a.approx_from, "runs": runs, "exponents": exps}
    if a.json:
        print(json.dumps(report))
        return
    print(f"machine: {report['machine']}\nbefore: {before}\nafter:  {after}\n")
    print(table(runs, exps))
    for r in runs:
        print(f"\n{r['rows']:,} {r['mode']}: cp graph {r.get('cp_graph')}\n  index {r.get('cp_index')}\n"
              f"  query {r.get('query_search')}\n  calibrate {r.get('calibrate_sampled')} {r.get('calibrate_search')}")


if __name__ == "__main__":
    main()
