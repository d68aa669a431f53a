"""Why `tstore embed` cannot hide Chroma's writes behind the encoder: the encoder's time on 1,000 texts
alone, and again while another thread upserts 1,000 vectors into an embedded Chroma collection
(four upserts of 250, tstore's Chroma settings and metadata keys), beside the upserts' own time.

If the upserts overlapped the encoding, "beside" would stay near "alone". It grows by about the
upserts' whole time when Chroma's upsert holds the GIL the encoder's thread needs between torch ops
(chromadb's Rust binding converts and writes without releasing it). Best of --rounds each, minilm,
the texts of benchmarks/embed.py.

    python benchmarks/embed_overlap.py [--texts 1000] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, load_average  # noqa: E402
from embed import load_texts  # noqa: E402

UPSERTS = 4


def upsert_all(coll, n: int, dim: int, tag: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    size = n // UPSERTS
    for b in range(UPSERTS):
        x = rng.standard_normal((size, dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        ids = [f"{tag}-{b * size + i}" for i in range(size)]
        metas = [{"label": "safe", "text_sha256": "0" * 64, "cat_1": "a", "cat_2": "b", "dataset": "d"} for _ in ids]
        coll.upsert(ids=ids, embeddings=x, metadatas=metas)


def collection():
    import chromadb

    from taxonomy_store.backend.vector_index import CHROMA_HNSW

    client = chromadb.PersistentClient(path=tempfile.mkdtemp(prefix="embed-overlap-"))
    return client.create_collection("overlap", configuration={"hnsw": dict(CHROMA_HNSW)})


def main() -> int:
    from taxonomy_store.store import init_store

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    texts = load_texts(a.texts)
    store = init_store(Path(tempfile.mkdtemp(prefix="embed-overlap-")) / "store")
    live = store.embeddings.live_encoder(store.encoders.get("minilm"))
    dim = live.encode(texts[:64]).shape[1]  # warm-up
    times: dict[str, list[float]] = {"encode_alone_s": [], "encode_beside_upserts_s": [], "upserts_alone_s": []}
    for r in range(a.rounds):
        t = time.perf_counter()
        live.encode(texts)
        times["encode_alone_s"].append(time.perf_counter() - t)
        writer = threading.Thread(target=upsert_all, args=(collection(), len(texts), dim, f"b{r}", r))
        t = time.perf_counter()
        writer.start()
        live.encode(texts)
        times["encode_beside_upserts_s"].append(time.perf_counter() - t)
        writer.join()
        coll = collection()
        t = time.perf_counter()
        upsert_all(coll, len(texts), dim, f"a{r}", r)
        times["upserts_alone_s"].append(time.perf_counter() - t)
    best = {k: round(min(v), 3) for k, v in times.items()}
    out = {"machine": f"{cpu_model()}, {load_average()}", "texts": len(texts), "rounds": a.rounds,
           "runs": {k: [round(x, 3) for x in v] for k, v in times.items()}, "best": best,
           "encode_slowed_by_s": round(best["encode_beside_upserts_s"] - best["encode_alone_s"], 3),
           "share_of_upserts_not_hidden": round((best["encode_beside_upserts_s"] - best["encode_alone_s"])
                                                / best["upserts_alone_s"], 2)}
    store.close()
    print(json.dumps(out, indent=None if a.json else 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
