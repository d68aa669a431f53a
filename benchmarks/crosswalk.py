"""`tstore crosswalk` with 10,000 generated source prompts in 15 categories onto a 12-category
target taxonomy (1,200 prompts): time of the proposals in process (pool warm) and of the whole
command as its own process. Target: <= 10 s. The generated source categories 0-11 share the
target categories' topic words; 12-14 have their own, so they should read *no counterpart*:
the script also reports how many top proposals are right.

    python benchmarks/crosswalk.py [--n 10000] [--json]
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _generated import prompts, vocabulary, write_csv  # noqa: E402
from _machine import REPO, cpu_model, load_average  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build(store_dir: Path, n: int, tmp: Path):
    from taxonomy_store.backend.hashing_encoder import HashingEncoder
    from taxonomy_store.store import init_store

    t_texts, t_cats, topics = prompts(1200, 12, seed=2, exact_share=0, near_share=0)
    words = vocabulary(np.random.default_rng(3), 4000)
    own = [list(np.random.default_rng(10 + i).choice(words[2000:3000], size=25, replace=False)) for i in range(3)]
    s_texts, s_cats, _ = prompts(n, 15, seed=4, exact_share=0, near_share=0, topics=topics + own)
    s_texts = [f"{t} (source)" for t in s_texts]  # no source text is a target text
    store = init_store(store_dir)
    common = dict(mapping=dict(text="text", id="id", category="category"), label="unsafe", create_categories=True)
    store.imports.import_file(write_csv(tmp / "target.csv", t_texts, t_cats, "t"), dataset="gen_target", taxonomy="gen-target", **common)
    store.imports.import_file(write_csv(tmp / "source.csv", s_texts, s_cats, "s"), dataset="gen_source", taxonomy="gen-source", **common)
    info = store.encoders.get("minilm")
    store.live_encoders.install(info, HashingEncoder(info.dimension or 384))
    store.embeddings.embed()
    return store


def right(report) -> tuple[int, int]:
    ok = 0
    for p in report["proposals"] if isinstance(report, dict) else report.proposals:
        src, targets, reading = (p["source"], p["targets"], p["reading"]) if isinstance(p, dict) else (p.source, p.targets, p.reading)
        c = int(src[1:])
        want = f"t{c:02d}" if c < 12 else None
        ok += (reading == "no counterpart") if want is None else (targets[:1] == [want])
    return ok, 15


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store_dir = Path(tmp) / "store"
        t0 = time.perf_counter()
        store = build(store_dir, a.n, Path(tmp))
        log(f"built {a.n} + 1200 prompts in {time.perf_counter() - t0:.1f} s")
        store.neighbours.pool(store.encoders.default_name())  # warm: the pool is read once per process
        t0, c0 = time.perf_counter(), time.process_time()
        report = store.crosswalks.propose("gen-source", "gen-target")
        warm, warm_cpu = time.perf_counter() - t0, time.process_time() - c0
        store.close()
        t0 = time.perf_counter()
        out = subprocess.run([str(Path(sys.executable).parent / "tstore"), "--store", str(store_dir), "crosswalk", "gen-source",
                              "gen-target", "--json"], capture_output=True, text=True, cwd=REPO, env=dict(os.environ), check=True).stdout
        cold = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cold_cpu = usage.ru_utime + usage.ru_stime
        ok, total = right(json.loads(out))
        assert right(report) == (ok, total)
        row = dict(benchmark="crosswalk", source_prompts=a.n, target_prompts=1200, proposals_s=round(warm, 2),
                   proposals_cpu_s=round(warm_cpu, 2),
                   command_s=round(cold, 1), command_cpu_s=round(cold_cpu, 1), right_top=f"{ok}/{total}", cpu=cpu_model(), load=load_average())
        log(f"crosswalk of {a.n} source prompts: proposals {warm:.2f} s in process ({warm_cpu:.2f} s CPU), `tstore crosswalk` {cold:.1f} s ({cold_cpu:.1f} s CPU); "
            f"{ok}/{total} right ({load_average()})")
        if a.json:
            print(json.dumps([row]))


if __name__ == "__main__":
    main()
