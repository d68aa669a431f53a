"""A new process's first use of the neighbour pool: every vector read back from Chroma (baseline)
vs the local copy at the encoder's vectors_revision (`embeddings/vector_cache.py`), same store,
same run. Also the first `guard.query` of a fresh process either way, and the token read that
every query pays (before migration 0007 it counted the encoder's embedding rows).

    python benchmarks/pool_load.py [--rows 100000] [--repeat 3]

The store is `_generated.realistic` embedded with the `hashing:384` development encoder (the
encoder does not matter here: the cost is reading and checking stored vectors).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model  # noqa: E402

ENC = "h384"

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from taxonomy_store.store import Store
s = Store.open(sys.argv[1])
t1 = time.perf_counter()
pool = s.neighbours.pool(sys.argv[2])
t2 = time.perf_counter()
s.guard.query(["How do I repot a fern without hurting its roots?"], encoder=sys.argv[2])
t3 = time.perf_counter()
tok = []
for _ in range(50):
    a = time.perf_counter(); s.neighbours._current_token(sys.argv[2]); tok.append(time.perf_counter() - a)
tok.sort()
print(json.dumps({"pool_load_s": t2 - t1, "first_query_s": t3 - t1, "rows": int(len(pool)), "token_ms": 1000 * tok[25]}))
"""


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def child(store: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(store), ENC], capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    import _generated

    with tempfile.TemporaryDirectory(prefix="pool_load_") as tmp:
        store = _generated.hashing_store(Path(tmp), a.rows, ENC)
        root, cache = store.dirs.root, store.dirs.cache / "vectors"
        store.close()
        print(f"machine: {cpu_model()}; {a.rows:,} rows; before: {uptime()}")
        chroma, local = [], []
        for _ in range(a.repeat):
            shutil.rmtree(cache, ignore_errors=True)
            chroma.append(child(root))  # baseline: every vector from Chroma (and the copy saved)
            local.append(child(root))  # the copy at the current revision
        print(f"after: {uptime()}")
        for name in ("pool_load_s", "first_query_s", "token_ms"):
            c = statistics.median(r[name] for r in chroma)
            loc = statistics.median(r[name] for r in local)
            print(f"{name:15} from Chroma {c:9.3f}   from the local copy {loc:9.3f}   ratio {loc / c:6.3f}")
        print(f"pool rows: {chroma[0]['rows']:,} (both: {chroma[0]['rows'] == local[0]['rows']})")


if __name__ == "__main__":
    main()
