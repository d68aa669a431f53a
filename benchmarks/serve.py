"""`tstore serve` under load on loopback, against baselines measured in the same run.

A `tstore serve` process on a store of the shared XSTest + Safe-Embed + Do-Not-Answer data
(minilm), called by a bounded httpx/asyncio load generator with texts from AlpacaEval and
AdvBench (read from ../shared/datasets, never copied into the repository):

- c=1, one text per request: p50/p99, against `store.guard.query([text])` in this process,
  alternated text by text so a shared machine's noise falls on both. Target p50 <= 1.3x.
- c=32, one text per request: texts/s against raw batched `SentenceTransformer.encode` of the
  same texts in this process (its default batch of 32, globally sorted by length; also batch 8,
  the fastest on a small CPU), alternated round by round. Target >= 0.8x.
- live: --live-s seconds (60; longer until the writer is done) at c=16 while another process imports 1,000 prompts (AdvBench
  unsafe + AlpacaEval safe), embeds them and re-calibrates: error responses (target 0),
  reloads seen in /metrics, and whether the imported texts are then served as their own
  nearest neighbours.
- peak RSS (VmHWM) of the server with minilm; with --sbert also of a server with sbert-all
  (on the 620-prompt demo store, which it embeds once).

    python benchmarks/serve.py [--store DIR] [--threads 1] [--live-s 60] [--sbert] [--json]
    python benchmarks/serve.py --quick          # fewer texts, a 20 s live phase
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import DATASETS, cpu_model, load_average  # noqa: E402

FILES = ("xstest_prompts.csv", "xstest_aug.csv", "do_not_answer.csv")
TSTORE = str(Path(sys.executable).parent / "tstore")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def alpaca() -> list[str]:
    with open(DATASETS / "alpaca_eval_instructions.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["instruction"] for line in f if line.strip()]


def advbench() -> list[str]:
    with open(DATASETS / "advbench_harmful_behaviors.csv", newline="", encoding="utf-8") as f:
        return [row["goal"] for row in csv.DictReader(f)]


def mixed(n: int, offset: int = 0) -> list[str]:
    """n texts alternating AlpacaEval (benign) and AdvBench (harmful), from `offset` on."""
    a, b = alpaca(), advbench()
    out = []
    for i in range(offset, offset + n):
        out.append(a[i // 2 % len(a)] if i % 2 == 0 else b[i // 2 % len(b)])
    return out


def build_store(path: Path) -> None:
    from taxonomy_store.store import init_store

    if path.exists() and any(path.iterdir()):  # built before (or not ours to build into)
        return
    store = init_store(path)
    store.taxonomies.load("do-not-answer")
    for name in FILES:
        store.imports.import_file(DATASETS / name)
    t = time.perf_counter()
    store.embeddings.embed("minilm")
    store.guard.calibrate("minilm")
    log(f"built {path}: embedded in {time.perf_counter() - t:.1f} s")
    store.close()


# -- the server process -------------------------------------------------------------------------
class Served:
    def __init__(self, store: Path, port: int, *extra: str):
        self.base = f"http://127.0.0.1:{port}"
        self.log = open(Path(tempfile.gettempdir()) / f"bench-serve-{port}.log", "wb")
        self.proc = subprocess.Popen([TSTORE, "--store", str(store), "serve", "--port", str(port), "--log-level", "warning", *extra],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"tstore serve exited: see {self.log.name}")
            try:
                if "encoder" in httpx.get(self.base + "/readyz", timeout=2).json():
                    return
            except Exception:
                pass
            time.sleep(0.3)
        raise SystemExit("tstore serve did not get ready in 300 s")

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- load ---------------------------------------------------------------------------------------
async def _load(base: str, texts: list[str], concurrency: int, *, until: float | None = None):
    """Send texts (one per request) with `concurrency` requests in flight; (latencies s, errors, seconds, sent)."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    next_i = 0

    async def worker(client):
        nonlocal next_i
        while True:
            if until is None and next_i >= len(texts) or until is not None and time.perf_counter() >= until:
                return
            text = texts[next_i % len(texts)]
            next_i += 1
            t = time.perf_counter()
            try:
                r = await client.post("/v1/moderations", json={"input": text})
                if r.status_code != 200:
                    errors.append(f"{r.status_code} {r.text[:200]}")
            except Exception as exc:  # noqa: BLE001 - every failure counts as an error response
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.perf_counter() - t)

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - t0, next_i


def pct(xs, q) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, q)) if xs else float("nan")


def single(base: str, store_dir: Path, texts: list[str]) -> dict:
    """c=1: HTTP and in-process query alternated text by text."""
    import httpx

    from taxonomy_store.store import Store

    store = Store.open(store_dir, read_only=True)
    store.guard.query(texts[:3])  # load the model and the vectors
    http, local = [], []
    with httpx.Client(base_url=base, timeout=120) as client:
        for text in texts[:3]:
            client.post("/v1/moderations", json={"input": text})
        for text in texts:
            t = time.perf_counter()
            r = client.post("/v1/moderations", json={"input": text})
            http.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
            t = time.perf_counter()
            store.guard.query([text])
            local.append(time.perf_counter() - t)
    store.close()
    return {"http_p50": pct(http, 50), "http_p99": pct(http, 99), "inproc_p50": pct(local, 50), "inproc_p99": pct(local, 99),
            "n": len(texts), "load": load_average()}


def concurrent(base: str, store_dir: Path, texts: list[str], rounds: int) -> dict:
    """c=32 texts/s against raw batched encode of the same texts, alternated round by round."""
    from taxonomy_store.backend.encoding import load_model  # the raw baseline: the bare model
    from taxonomy_store.backend.model_folders import resolve_model_ref
    from taxonomy_store.store import Store

    with Store.open(store_dir, read_only=True) as store:
        ref = store.encoders.get("minilm").model_ref
    model = load_model(str(resolve_model_ref(ref)))
    model.encode(texts[:8])
    raw_rates, served_rates, lat = [], [], []
    best_rates = []
    for i in range(rounds):
        t = time.perf_counter()
        model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)  # sentence-transformers' default
        raw_rates.append(len(texts) / (time.perf_counter() - t))
        t = time.perf_counter()
        model.encode(texts, batch_size=8, convert_to_numpy=True, show_progress_bar=False)  # the fastest on a small CPU
        best_rates.append(len(texts) / (time.perf_counter() - t))
        latencies, errors, seconds, sent = asyncio.run(_load(base, texts, 32))
        assert not errors, errors[:3]
        served_rates.append(sent / seconds)
        lat += latencies
        log(f"  round {i + 1}: raw {raw_rates[-1]:.1f} (batch 8: {best_rates[-1]:.1f}) texts/s, served {served_rates[-1]:.1f} "
            f"texts/s ({load_average()})")
    return {"served_tps": float(np.median(served_rates)), "raw_tps": float(np.median(raw_rates)),
            "raw8_tps": float(np.median(best_rates)), "p50": pct(lat, 50),
            "p99": pct(lat, 99), "n": len(texts), "rounds": rounds, "load": load_average()}


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return float("nan")


def _nearest(base: str, texts: list[str]) -> list[tuple[float, str | None]]:
    import httpx

    r = httpx.post(base + "/v1/query", json={"input": texts, "k": 1}, timeout=120)
    r.raise_for_status()
    return [(d["neighbours"][0]["similarity"], d["neighbours"][0]["dataset"]) for d in r.json()["results"]]


def live(base: str, store_dir: Path, seconds: float, work: Path, most: float) -> dict:
    """c=16 for `seconds`, and on until the writer is done (`most` seconds at most), while another
    process imports + embeds 1,000 prompts and re-calibrates."""
    import httpx

    unsafe, safe = advbench()[-300:], alpaca()[-700:]
    new = work / "live-import.csv"
    with open(new, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([[t, "unsafe"] for t in unsafe] + [[t, "safe"] for t in safe])
    probes = unsafe[:3] + safe[:3]
    before = _nearest(base, probes)
    metrics0 = httpx.get(base + "/metrics", timeout=30).text
    queries = mixed(400, offset=2000)
    script = (f"sleep 5 && {TSTORE} --store {store_dir} import {new} --dataset live-import && "
              f"{TSTORE} --store {store_dir} embed && {TSTORE} --store {store_dir} calibrate")
    writer = subprocess.Popen(["bash", "-c", script], stdout=subprocess.DEVNULL, stderr=open(work / "writer.log", "wb"))
    t0 = time.perf_counter()
    latencies, errors, took, sent = asyncio.run(_load(base, queries, 16, until=t0 + seconds))
    while writer.poll() is None and time.perf_counter() - t0 < most:  # keep the load on while the writer works
        more = asyncio.run(_load(base, queries, 16, until=time.perf_counter() + 10))
        latencies += more[0]
        errors += more[1]
        took += more[2]
        sent += more[3]
    writer_rc = writer.wait(timeout=900)
    writer_s = time.perf_counter() - t0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and httpx.get(base + "/readyz", timeout=30).status_code != 200:
        time.sleep(0.5)
    metrics1 = httpx.get(base + "/metrics", timeout=30).text
    after = _nearest(base, probes)
    return {
        "seconds": took, "requests": sent, "errors": len(errors), "error_samples": errors[:5], "p50": pct(latencies, 50),
        "p99": pct(latencies, 99), "reloads": _metric(metrics1, "tstore_reloads_total") - _metric(metrics0, "tstore_reloads_total"),
        "writer_rc": writer_rc, "writer_s": writer_s,
        "before": before, "after": after,
        "reflects_new_data": all(s > 0.999 and d == "live-import" for s, d in after) and not any(s > 0.999 for s, _ in before),
        "ready_after": httpx.get(base + "/readyz", timeout=30).status_code == 200, "load": load_average(),
    }


def sbert_rss(work: Path, threads: str) -> float:
    """Peak RSS of a server answering with sbert-all (the demo set's 200 paired prompts, embedded once)."""
    store = work / "sbert-demo"
    if not (store / "tstore-store.json").exists():
        pairs = Path(__file__).resolve().parent.parent / "seeds" / "demo" / "pairs.csv"
        subprocess.run([TSTORE, "--store", str(store), "init"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([TSTORE, "--store", str(store), "import", str(pairs)], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([TSTORE, "--store", str(store), "encoder", "install", "sbert-all"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([TSTORE, "--store", str(store), "embed", "--encoder", "sbert-all"], check=True, stdout=subprocess.DEVNULL)
    server = Served(store, free_port(), "--encoder", "sbert-all", *threads)
    try:
        import httpx

        for text in mixed(40):
            httpx.post(server.base + "/v1/moderations", json={"input": text}, timeout=120)
        return server.peak_rss_mib()
    finally:
        server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=None, help="store to build (once) and serve [default: a temporary one]")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server and of the baselines")
    ap.add_argument("--single", type=int, default=200, help="texts at c=1")
    ap.add_argument("--many", type=int, default=320, help="texts per c=32 round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--live-s", type=float, default=60.0, help="live phase: at least this long ...")
    ap.add_argument("--live-max-s", type=float, default=600.0, help="... and on until the writer is done, at most this long")
    ap.add_argument("--sbert-only", action="store_true", help="only the peak RSS of a server with sbert-all")
    ap.add_argument("--sbert", action="store_true", help="also the peak RSS of a server with sbert-all")
    ap.add_argument("--quick", action="store_true", help="60 texts at c=1, 160 per round, 2 rounds, a 20 s live phase")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.single, args.many, args.rounds, args.live_s = 60, 160, 2, 20.0
    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="tstore-bench-serve-"))
    if args.sbert_only:
        log(f"peak RSS sbert-all {sbert_rss(work, ('--threads', str(args.threads))):.0f} MiB ({load_average()})")
        return 0
    store_dir = args.store or work / "base"
    build_store(store_dir)
    import shutil

    shutil.copytree(store_dir, work / "store")  # the live phase writes to the copy: the base stays reusable
    store_dir = work / "store"
    threads = ("--threads", str(args.threads))
    server = Served(store_dir, free_port(), *threads)
    try:
        log(f"c=1: {args.single} texts ({load_average()})")
        one = single(server.base, store_dir, mixed(args.single))
        log(f"c=32: {args.many} texts x {args.rounds} rounds")
        many = concurrent(server.base, store_dir, mixed(args.many, offset=args.single), args.rounds)
        log(f"live: {args.live_s:.0f} s at c=16 with an import + embed + calibrate beside it")
        alive = live(server.base, store_dir, args.live_s, work, args.live_max_s)
        rss = server.peak_rss_mib()
    finally:
        server.stop()
    rss_sbert = sbert_rss(work, threads) if args.sbert else None
    report(args, one, many, alive, rss, rss_sbert)
    return 0


def report(args, one: dict, many: dict, alive: dict, rss: float, rss_sbert: float | None) -> None:
    r1 = one["http_p50"] / one["inproc_p50"]
    r32 = many["served_tps"] / many["raw_tps"]
    log(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, --threads {args.threads}")
    log(f"c=1   p50 {one['http_p50']:.1f} ms  p99 {one['http_p99']:.1f} ms  vs in-process p50 {one['inproc_p50']:.1f} ms "
        f"({r1:.2f}x, target <= 1.3x; {one['load']})")
    log(f"c=32  {many['served_tps']:.1f} texts/s vs raw batched encode {many['raw_tps']:.1f} texts/s ({r32:.2f}x, target >= 0.8x; "
        f"vs batch 8 {many['raw8_tps']:.1f}: {many['served_tps'] / many['raw8_tps']:.2f}x); "
        f"p50 {many['p50']:.0f} ms p99 {many['p99']:.0f} ms ({many['load']})")
    log(f"live  {alive['requests']} requests in {alive['seconds']:.0f} s at c=16: {alive['errors']} errors, {alive['reloads']:.0f} reloads, "
        f"p50 {alive['p50']:.0f} ms p99 {alive['p99']:.0f} ms; writer rc {alive['writer_rc']} in {alive['writer_s']:.0f} s; "
        f"new data served: {alive['reflects_new_data']}; ready after: {alive['ready_after']} ({alive['load']})")
    for sample in alive["error_samples"]:
        log(f"      error: {sample}")
    log(f"peak RSS  minilm {rss:.0f} MiB" + (f", sbert-all {rss_sbert:.0f} MiB" if rss_sbert else ""))
    if args.json:
        rows = [
            {"benchmark": "serve", "measure": "c=1 p50 ms", "ours": one["http_p50"], "baseline_name": "in-process query p50",
             "baseline": one["inproc_p50"], "unit": "ms", "ratio": r1, "target": "<= 1.3", "met": r1 <= 1.3},
            {"benchmark": "serve", "measure": "c=32 texts/s", "ours": many["served_tps"], "baseline_name": "raw batched encode",
             "baseline": many["raw_tps"], "unit": "texts/s", "ratio": r32, "target": ">= 0.8", "met": r32 >= 0.8},
            {"benchmark": "serve", "measure": "live errors", "ours": alive["errors"], "baseline_name": "none", "baseline": 0,
             "unit": "responses", "ratio": None, "target": "0", "met": alive["errors"] == 0 and alive["reloads"] >= 1},
        ]
        print(json.dumps({"single": one, "concurrent": many, "live": alive, "rss_mib": {"minilm": rss, "sbert-all": rss_sbert}}))
        print(json.dumps(rows))


if __name__ == "__main__":
    sys.exit(main())
