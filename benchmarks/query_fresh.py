"""Query latency in a fresh process against the process that imported and embedded the store.

`million.py` measures query p50 in the process that has just imported and embedded the generated
store; this script builds the same store (`_generated.realistic`, hashing:384,
TSTORE_APPROX_FROM=50000 so that 300k is searched through the faiss index), then times 100
in-process queries in two fresh processes (the first reads every vector from Chroma and builds the
index; the second uses the local vector copy and the saved index) and, last, in the process that
embedded, all in the same run.

    python benchmarks/query_fresh.py [ROWS]      (default 300000)
"""
import sys, time, tempfile, os, subprocess, json
from pathlib import Path
os.environ["TSTORE_APPROX_FROM"] = "50000"
import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
import _generated
from taxonomy_store.store import init_store
n = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
tmp = Path(tempfile.mkdtemp(prefix="f300"))
path = _generated.write_rows(tmp / "g.csv", _generated.realistic(n, seed=0))
store = init_store(tmp / "store")
store.encoders.add("h384", "hashing:384")
store.taxonomies.load("do-not-answer")
t0=time.perf_counter(); store.imports.import_file(path, taxonomy="do-not-answer"); print("import", round(time.perf_counter()-t0,1), flush=True)
t0=time.perf_counter(); store.embeddings.embed("h384"); print("embed", round(time.perf_counter()-t0,1), flush=True)
CHILD = r'''
import sys, time, json, os
import numpy as np
sys.path.insert(0, sys.argv[2])
import _generated
from taxonomy_store.store import Store
texts = [r[1] for r in _generated.realistic(2000, seed=99)]
t0=time.perf_counter(); s = Store.open(sys.argv[1]); pool = s.neighbours.pool("h384"); load=time.perf_counter()-t0
t0=time.perf_counter(); r = s.guard.query([texts[0]], encoder="h384"); first=time.perf_counter()-t0
ts=[]
for t in texts[1:101]:
    a=time.perf_counter(); s.guard.query([t], encoder="h384"); ts.append(time.perf_counter()-a)
print(json.dumps({"pool_load_s": round(load,2), "first_query_s": round(first,2), "p50_ms": round(1000*float(np.median(ts)),2), "p95_ms": round(1000*float(np.percentile(ts,95)),2), "search": {k: v for k, v in (r[0].neighbour_search or {}).items() if k != "index"} if hasattr(r[0], "neighbour_search") else None}))
'''
def up(): return subprocess.run(["uptime"],capture_output=True,text=True).stdout.strip()
for i in range(2):
    print("fresh process", i, up(), flush=True)
    out = subprocess.run([sys.executable, "-c", CHILD, str(tmp / "store"), str(Path(__file__).resolve().parent)], capture_output=True, text=True, env=dict(os.environ))
    print(out.stdout.strip() or out.stderr[-2000:], flush=True)
texts = [r[1] for r in _generated.realistic(2000, seed=99)]
print("same process that embedded", up(), flush=True)
t0=time.perf_counter(); store.guard.query([texts[0]], encoder="h384"); print("first", round(time.perf_counter()-t0,2))
ts=[]
for t in texts[1:101]:
    a=time.perf_counter(); store.guard.query([t], encoder="h384"); ts.append(time.perf_counter()-a)
print("p50 ms", round(1000*float(np.median(ts)),2), "p95", round(1000*float(np.percentile(ts,95)),2), up(), flush=True)
import shutil; shutil.rmtree(tmp)
