"""Where `tstore embed` spends its time beside the encoder: the embed path split into its stages,
on the same texts as benchmarks/embed.py (minilm, ~1,000 prompts of ../shared/datasets).

Each stage is timed by wrapping the function that does it (wall seconds, summed over calls;
the writer thread's stages overlap the encoder's, so they are listed apart). Then cProfile's
top functions of one more embed, by cumulative time, show what the stages are made of.

    python benchmarks/embed_profile.py [--texts 1000] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import os
import pstats
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import load_average  # noqa: E402
from embed import fill_store, load_texts  # noqa: E402

SPENT: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)


def timed(owner, name: str, label: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*a, **kw):
        t0 = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            where = "writer thread" if threading.current_thread().name.startswith("tstore-embed-writer") else "main thread"
            SPENT[f"{where}: {label}"] += time.perf_counter() - t0
            CALLS[f"{where}: {label}"] += 1

    setattr(owner, name, wrapper)


def instrument() -> None:
    from taxonomy_store.backend import encoding, vector_index, writer_lock
    from taxonomy_store.embeddings import indexing

    timed(writer_lock.WriterLock, "hold", "writer lock (acquire + held body)")
    timed(indexing.Embeddings, "_sql_state", "SQL state (live prompts, nodes, bookkeeping)")
    timed(vector_index.VectorIndex, "collection", "Chroma: open collection")
    timed(vector_index.VectorIndex, "ids", "Chroma: ids already present")
    timed(indexing, "vector_metadata", "metadata per prompt")
    timed(indexing, "meta_sha256", "metadata hash per prompt")
    timed(indexing.Embeddings, "live_encoder", "live encoder (weights check)")
    timed(encoding.LiveEncoder, "encode", "encode (model.encode + normalise)")
    timed(encoding, "normalise_rows", "normalise rows")
    timed(vector_index.VectorIndex, "upsert", "Chroma upsert")
    timed(indexing.Embeddings, "_write_bookkeeping", "SQL bookkeeping write")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--texts", type=int, default=1000)
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()

    from taxonomy_store.backend.encoding import load_model
    from taxonomy_store.embeddings.encoders import DEFAULT_MODEL_REF, resolve_model_ref
    from taxonomy_store.store import init_store

    texts = load_texts(args.texts)
    model = load_model(str(resolve_model_ref(DEFAULT_MODEL_REF)), "cpu")
    import chromadb  # noqa: F401

    model.encode(texts[:64], batch_size=64)
    instrument()
    print(f"{len(texts)} texts, minilm, {os.cpu_count()} CPUs, {load_average()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="tstore-embed-profile-") as tmp:
        t0 = time.perf_counter()
        model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
        raw = time.perf_counter() - t0
        store = init_store(Path(tmp) / "a")
        fill_store(store, texts)
        store.encoders.get("minilm")
        SPENT.clear()
        CALLS.clear()
        t0 = time.perf_counter()
        store.embeddings.embed("minilm")
        total = time.perf_counter() - t0
        store.close()
        print(f"raw encode {raw:.2f} s; embed {total:.2f} s (ratio {raw / total:.3f})")
        for label, s in sorted(SPENT.items(), key=lambda kv: -kv[1]):
            print(f"  {s:7.3f} s  {100 * s / total:5.1f}%  x{CALLS[label]:<4d} {label}")

        store = init_store(Path(tmp) / "b")
        fill_store(store, texts)
        store.encoders.get("minilm")
        prof = cProfile.Profile()
        prof.enable()
        store.embeddings.embed("minilm")
        prof.disable()
        store.close()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(args.top)
    print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
