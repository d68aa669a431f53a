"""`tstore overlap` over 100,000 generated prompts in three datasets: time and peak memory.

The store is built first (import, vectors from the hashing encoder, not timed); then `tstore
overlap --threshold 0.95 --json` runs as its own process, timed (wall, and CPU from getrusage,
which a shared machine's load does not inflate), its peak RSS read from getrusage.
Target: <= 60 s and <= 2 GB on the repository's 2-core machine.

    python benchmarks/overlap.py [--n 100000] [--store DIR] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _generated import prompts, write_csv  # noqa: E402
from _machine import REPO, cpu_model, load_average  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build(store_dir: Path, n: int, tmp: Path) -> None:
    from taxonomy_store.backend.hashing_encoder import HashingEncoder
    from taxonomy_store.store import init_store

    texts, cats, _ = prompts(n, 15, seed=1)
    store = init_store(store_dir)
    t0 = time.perf_counter()
    thirds = [range(i * n // 3, (i + 1) * n // 3) for i in range(3)]
    for name, rows in zip(("gen_a", "gen_b", "gen_c"), thirds):
        path = write_csv(tmp / f"{name}.csv", texts, None, f"{name}-", rows)
        store.imports.import_file(path, dataset=name, mapping=dict(text="text", id="id"), label="unsafe")
    info = store.encoders.get("minilm")
    store.live_encoders.install(info, HashingEncoder(info.dimension or 384))
    store.embeddings.embed()
    log(f"built {n} prompts in {time.perf_counter() - t0:.1f} s")
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--store", type=Path, default=None)
    ap.add_argument("--threshold", type=float, default=0.95)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store_dir = a.store or Path(tmp) / "store"
        if not (store_dir / "tstore-store.json").exists():
            build(store_dir, a.n, Path(tmp))
        tstore = str(Path(sys.executable).parent / "tstore")
        t0 = time.perf_counter()
        out = subprocess.run([tstore, "--store", str(store_dir), "overlap", "--threshold", str(a.threshold), "--json"],
                             capture_output=True, text=True, cwd=REPO, env=dict(os.environ), check=True).stdout
        wall = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak_gb, cpu_s = usage.ru_maxrss / 1024 / 1024, usage.ru_utime + usage.ru_stime
        report = json.loads(out)
        row = dict(benchmark="overlap", prompts=a.n, threshold=a.threshold, seconds=round(wall, 1), cpu_seconds=round(cpu_s, 1),
                   peak_rss_gb=round(peak_gb, 2),
                   groups=len(report["groups"]), pairs=report["pairs"], cpu=cpu_model(), load=load_average())
        log(f"tstore overlap over {a.n} prompts: {wall:.1f} s wall, {cpu_s:.1f} s CPU (user + system), peak RSS {peak_gb:.2f} GB, {len(report['groups'])} groups ({load_average()})")
        for p in report["pairs"]:
            log(f"  {p['a']:>6} {p['b']:>6}  exact {p['exact']:>5}  near {p['near']:>5}")
        if a.json:
            print(json.dumps([row]))


if __name__ == "__main__":
    main()
