"""Warm `store.guard.query` latency and throughput versus the raw path, in one process and run.

Raw path: `SentenceTransformer.encode` of the same model + a numpy brute-force top-k over the
same vectors. Ours adds the category vote, the unsafe score, the verdict and the neighbours'
rows. Target: single-prompt p50 <= 1.3x raw. Single queries alternate ours / raw so that the
noise of a shared machine falls on both alike.

    python benchmarks/query.py                      # builds a temporary store from ../shared/datasets
    python benchmarks/query.py --store DIR          # an existing, embedded store (built there if absent)
    python benchmarks/query.py --json               # details, then a JSON list of rows (run_all.py)
    python benchmarks/query.py --file-only          # only `tstore query --file` over AlpacaEval's 805 instructions

`query --file`: the whole command (start, model load, encode, search, verdicts, JSON lines out)
over AlpacaEval's 805 instructions versus a process that loads the same model and encodes the
same texts, run alternately in one run, best of --file-repeats. Target: <= 1.3x.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import DATASETS, cpu_model  # noqa: E402

FILES = ("xstest_prompts.csv", "xstest_aug.csv", "do_not_answer.csv")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_store(path: Path, encoder: str):
    from taxonomy_store.store import init_store

    store = init_store(path)
    store.taxonomies.load("do-not-answer")
    for name in FILES:
        store.imports.import_file(DATASETS / name)
    t = time.perf_counter()
    store.embeddings.embed(encoder)
    log(f"embedded the store in {time.perf_counter() - t:.1f} s")
    return store


def machine() -> dict:
    import torch

    cpu = cpu_model()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


ALPACA = "alpaca_eval_instructions.jsonl"
ENCODE_ONLY = """
import json, sys
try:
    from taxonomy_store.backend.encoding import load_model
    from taxonomy_store.backend.model_folders import resolve_model_ref
except ImportError:
    from taxonomy_store.backend.encoding import load_model
    from taxonomy_store.embeddings.encoders import resolve_model_ref
texts = [json.loads(line)["text"] for line in open(sys.argv[1], encoding="utf-8")]
model = load_model(str(resolve_model_ref(sys.argv[2])))
model.encode(texts, batch_size=int(sys.argv[3]), convert_to_numpy=True, show_progress_bar=False)
"""


def file_run(store_dir: Path, encoder: str, repeats: int) -> dict:
    """`tstore query --file` over AlpacaEval's instructions vs model load + encode of the same texts."""
    import subprocess

    from taxonomy_store.store import Store

    with Store.open(store_dir) as store:
        info = store.encoders.get(encoder)
    work = Path(tempfile.mkdtemp())
    inputs = work / "alpaca.jsonl"
    with open(DATASETS / ALPACA, encoding="utf-8") as src, open(inputs, "w", encoding="utf-8") as out:
        for n, line in enumerate(src):
            out.write(json.dumps({"id": n, "text": json.loads(line)["instruction"]}) + "\n")
    tstore = [str(Path(sys.executable).parent / "tstore"), "--store", str(store_dir), "query", "--file", str(inputs),
              "--encoder", encoder, "--json"]
    raw = [sys.executable, "-c", ENCODE_ONLY, str(inputs), info.model_ref, str(info.batch_size)]
    times: dict[str, list[float]] = {"ours": [], "raw": []}
    for rep in range(repeats):
        for name in (("ours", "raw") if rep % 2 == 0 else ("raw", "ours")):
            t = time.perf_counter()
            subprocess.run(tstore if name == "ours" else raw, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - t)
    ours, base = min(times["ours"]), min(times["raw"])
    return {"n": 805, "ours_s": ours, "raw_s": base, "ratio": ours / base, "target_met": ours / base <= 1.3, "runs": times}


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, p))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="an existing store (default: build a temporary one from the shared datasets)")
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--singles", type=int, default=200, help="single-prompt queries per path")
    ap.add_argument("--batch", type=int, default=1000, help="prompts in the batch run")
    ap.add_argument("--batch-repeats", type=int, default=2, help="batch runs per path (alternating; the best counts)")
    ap.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads for both paths (default: torch's)")
    ap.add_argument("--file-repeats", type=int, default=3, help="`query --file` runs per path (alternating; the best counts)")
    ap.add_argument("--file-only", action="store_true", help="only the `query --file` measure")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.file_only:
        tmp = None
        if not args.store:
            tmp = tempfile.TemporaryDirectory()
            build_store(Path(tmp.name) / "store", args.encoder).close()
        f = file_run(Path(args.store or Path(tmp.name) / "store"), args.encoder, args.file_repeats)
        print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
        print(f"query --file, {f['n']} AlpacaEval instructions (best of {args.file_repeats}, alternating):")
        print(f"  model load + encode    {f['raw_s']:6.2f} s")
        print(f"  tstore query --file    {f['ours_s']:6.2f} s   ({f['ratio']:.2f}x; target <= 1.3x: {'met' if f['target_met'] else 'MISSED'})")
        return 0
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)

    from taxonomy_store.catalog import live_prompts
    from taxonomy_store.backend.encoding import load_model

    tmp = None
    if args.store and (Path(args.store) / "tstore-store.json").exists():
        from taxonomy_store.store import Store

        store = Store.open(args.store)
    elif args.store:  # build it there and keep it, for repeated runs
        store = build_store(Path(args.store), args.encoder)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="tstore-bench-")
        store = build_store(Path(tmp.name) / "store", args.encoder)

    info = store.encoders.get(args.encoder)
    model = load_model(str(info.model_path), info.device)
    vs = store.embeddings.load_vectors(args.encoder)
    vectors = np.ascontiguousarray(vs.vectors, dtype=np.float32)
    with store.session() as s:
        texts = [r.text for r in live_prompts(s)]
    # Queries: stored prompts with a word dropped, so they are near the store but not in it.
    rng = np.random.default_rng(0)
    pool = []
    for i in rng.permutation(len(texts)):
        words = texts[i].split()
        if len(words) > 3:
            del words[int(rng.integers(len(words)))]
        pool.append(" ".join(words))
    k = args.k

    def raw(batch: list[str]):
        qv = model.encode(batch, batch_size=64, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
        sims = qv.astype(np.float32) @ vectors.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        return np.take_along_axis(part, order, axis=1)

    def ours(batch: list[str]):
        return store.guard.query(batch, encoder=args.encoder, k=k)

    def ours_chroma(batch: list[str]):
        return store.guard.query(batch, encoder=args.encoder, k=k, label=["safe", "unsafe"])

    # warm both paths (model, snapshot, Chroma client)
    for t in pool[:5]:
        raw([t]), ours([t]), ours_chroma([t])

    n = min(args.singles, len(pool))
    t_raw, t_ours, t_chroma = [], [], []
    for i in range(n):
        text = [pool[i]]
        for fn, acc in ((raw, t_raw), (ours, t_ours)) if i % 2 == 0 else ((ours, t_ours), (raw, t_raw)):
            t = time.perf_counter()
            fn(text)
            acc.append(time.perf_counter() - t)
    for i in range(min(50, n)):
        t = time.perf_counter()
        ours_chroma([pool[i]])
        t_chroma.append(time.perf_counter() - t)

    batch = [pool[i % len(pool)] for i in range(args.batch)]
    b_raw_runs, b_ours_runs = [], []
    for rep in range(args.batch_repeats):  # alternating, best of each: the machine's noise hits both
        for fn, acc in ((raw, b_raw_runs), (ours, b_ours_runs)) if rep % 2 == 0 else ((ours, b_ours_runs), (raw, b_raw_runs)):
            t = time.perf_counter()
            res = fn(batch)
            acc.append(time.perf_counter() - t)
            assert len(res) == len(batch)
    b_raw, b_ours = min(b_raw_runs), min(b_ours_runs)

    out = {
        "machine": machine(),
        "store_prompts": int(len(vectors)),
        "encoder": args.encoder,
        "k": k,
        "single": {
            "n": n,
            "raw_p50_ms": pct(t_raw, 50), "raw_p95_ms": pct(t_raw, 95),
            "ours_p50_ms": pct(t_ours, 50), "ours_p95_ms": pct(t_ours, 95),
            "ratio_p50": pct(t_ours, 50) / pct(t_raw, 50), "ratio_p95": pct(t_ours, 95) / pct(t_raw, 95),
            "chroma_filtered_p50_ms": pct(t_chroma, 50), "chroma_filtered_p95_ms": pct(t_chroma, 95),
        },
        "batch": {
            "n": len(batch),
            "raw_s": b_raw, "ours_s": b_ours,
            "raw_prompts_per_s": len(batch) / b_raw, "ours_prompts_per_s": len(batch) / b_ours,
            "ratio": b_ours / b_raw,
        },
    }
    out["single"]["target_met"] = out["single"]["ratio_p50"] <= 1.3
    s_, b_ = out["single"], out["batch"]
    if args.json:
        print(json.dumps(out))
        raw_name = "SentenceTransformer.encode + numpy top-k"
        print(json.dumps([
            {"benchmark": "query", "measure": "single prompt p50", "ours": s_["ours_p50_ms"], "baseline_name": raw_name,
             "baseline": s_["raw_p50_ms"], "unit": "ms", "ratio": s_["ratio_p50"], "target": "<= 1.3x", "met": s_["target_met"]},
            {"benchmark": "query", "measure": "single prompt p95", "ours": s_["ours_p95_ms"], "baseline_name": raw_name,
             "baseline": s_["raw_p95_ms"], "unit": "ms", "ratio": s_["ratio_p95"], "target": "", "met": None},
            {"benchmark": "query", "measure": "filtered (exact masks) p50", "ours": s_["chroma_filtered_p50_ms"], "baseline_name": raw_name,
             "baseline": s_["raw_p50_ms"], "unit": "ms", "ratio": s_["chroma_filtered_p50_ms"] / s_["raw_p50_ms"], "target": "", "met": None},
            {"benchmark": "query", "measure": f"batch of {b_['n']} throughput", "ours": b_["ours_prompts_per_s"], "baseline_name": raw_name,
             "baseline": b_["raw_prompts_per_s"], "unit": "prompts/s", "ratio": b_["ours_prompts_per_s"] / b_["raw_prompts_per_s"],
             "target": "", "met": None},
        ]))
    else:
        m, s, b = out["machine"], out["single"], out["batch"]
        print(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), load {m['load_average'][0]:.2f}")
        print(f"store: {out['store_prompts']} prompts, encoder {args.encoder}, k={k}")
        print(f"single prompt ({n} each, interleaved):")
        print(f"  raw encode + numpy top-k   p50 {s['raw_p50_ms']:7.2f} ms   p95 {s['raw_p95_ms']:7.2f} ms")
        print(f"  store.guard.query         p50 {s['ours_p50_ms']:7.2f} ms   p95 {s['ours_p95_ms']:7.2f} ms")
        print(f"  ratio                      p50 {s['ratio_p50']:7.2f}x     p95 {s['ratio_p95']:7.2f}x   (target p50 <= 1.3x: {'met' if s['target_met'] else 'MISSED'})")
        print(f"  filtered (exact masks)     p50 {s['chroma_filtered_p50_ms']:7.2f} ms   p95 {s['chroma_filtered_p95_ms']:7.2f} ms")
        print(f"batch of {b['n']} (best of {args.batch_repeats}, alternating):")
        print(f"  raw  {b['raw_s']:6.2f} s  {b['raw_prompts_per_s']:7.1f} prompts/s")
        print(f"  ours {b['ours_s']:6.2f} s  {b['ours_prompts_per_s']:7.1f} prompts/s  ({b['ratio']:.2f}x the raw time)")
    store.close()
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
