"""Approximate nearest neighbours for large prompt sets: a faiss IVF-Flat index, re-ranked exactly.

Why faiss (faiss-cpu) and IVF-Flat, rather than usearch or hnswlib (HNSW graphs):
- IVF-Flat keeps every vector as it is (no quantisation) and partitions them by k-means; a search
  scans the `nprobe` nearest lists with BLAS/SIMD inner products. The only approximation is which
  lists are scanned, and `nprobe` is tuned at build time until the *measured* recall reaches
  RECALL_TARGET.
- Incremental updates are first-class: `remove_ids` and `add_with_ids` change an IVF index in
  place (HNSW in hnswlib/usearch can only mark deletions, and its graph degrades with edits).
- Persistence is `faiss.write_index` / `read_index`, one file; a damaged file fails to read and
  is rebuilt, never trusted.
- Builds are fast on few cores (k-means on a sample, then one pass to assign lists); an HNSW
  build of a million 384-d vectors takes many minutes on two cores.
- Filtered searches take an `IDSelectorBitmap` (a boolean per row), so masks stay masks.

Every candidate faiss finds is re-scored exactly (`metrics.similarity.exact_topk`: float64 dot
products of the stored float32 vectors, ties to the lower row), so the similarities reported are
those of the exact path for the neighbours found; only *which* neighbours may differ, and the
recall says how often. Recall follows ann-benchmarks: a found neighbour counts when its
similarity reaches the exact k-th similarity (so ties are not misses), averaged over a seeded
sample of queries, measured against exact top-k whenever the index is built or updated.

faiss ids are row ids of the indexed set (the caller's prompt ids); rows are identified by keys
(prompt id and text hash) so an update removes changed and removed rows and adds new ones.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from taxonomy_store.metrics.similarity import exact_topk, knn_query

APPROX_FROM = 200_000  # rows: below this, exact top-k (measured: benchmarks/million.py)
RECALL_TARGET = 0.99
RECALL_SAMPLE = 1000  # queries, seeded
RECALL_K = 10
# Past this share of the lists scanned per query an IVF search reads as many vectors as exact blocked
# top-k and runs slower (measured: benchmarks/million.py on hashing:384, nprobe ~ nlist/2 for 0.99):
# the index is then declined and the search stays exact.
MAX_SCAN_SHARE = 0.25
SEED = 0
_BATCH = 8192


def approx_from_setting(value: str | None) -> int:
    """The threshold from TSTORE_APPROX_FROM (rows), APPROX_FROM when unset."""
    if value is None or value == "":
        return APPROX_FROM
    try:
        n = int(value)
    except ValueError:
        from taxonomy_store.errors import InvalidValue

        raise InvalidValue(f"TSTORE_APPROX_FROM={value!r} is not a number of rows",
                           f"set a whole number (the default is {APPROX_FROM}), or unset it") from None
    return max(n, 2)


@dataclass
class NeighbourSettings:
    """When searches go approximate: sets of at least `approx_from` rows, unless `exact` (--exact)."""

    approx_from: int = APPROX_FROM
    exact: bool = False

    def approximate(self, rows: int) -> bool:
        return not self.exact and rows >= self.approx_from


def _faiss():
    import faiss  # a heavy import: only when a set is large enough to need it

    return faiss


@dataclass
class AnnIndex:
    """An IVF-Flat inner-product index over rows identified by `keys`, faiss ids = `ids`."""

    index: Any
    ids: np.ndarray  # ascending
    keys: np.ndarray
    params: dict[str, Any] = field(default_factory=dict)

    # -- building ------------------------------------------------------------------------
    @classmethod
    def build(cls, ids: np.ndarray, keys: np.ndarray, x: np.ndarray) -> "AnnIndex":
        faiss = _faiss()
        n, d = x.shape
        nlist = int(max(1, min(4 * math.sqrt(n), n // 39)))
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = SEED
        index.cp.niter = 10
        index.cp.max_points_per_centroid = 64
        t0 = time.perf_counter()
        sample = np.random.default_rng(SEED).choice(n, size=min(n, nlist * 64), replace=False)
        index.train(np.ascontiguousarray(x[np.sort(sample)]))
        index.add_with_ids(x, np.asarray(ids, dtype=np.int64))
        params = {"library": "faiss", "faiss_version": faiss.__version__, "index": "IVFFlat", "metric": "inner_product",
                  "nlist": nlist, "nprobe": 1, "rerank": "exact float64 dot products of the stored float32 vectors",
                  "build_seconds": round(time.perf_counter() - t0, 3)}
        return cls(index=index, ids=np.asarray(ids, dtype=np.int64), keys=np.asarray(keys), params=params)

    def update(self, ids: np.ndarray, keys: np.ndarray, vectors: Callable[[], np.ndarray]) -> dict[str, int]:
        """Bring the index to these rows: remove removed and changed rows, add new and changed ones."""
        old = dict(zip(self.keys.tolist(), self.ids.tolist()))
        new_keys = np.asarray(keys)
        new_set = set(new_keys.tolist())
        gone = np.array([i for k, i in old.items() if k not in new_set], dtype=np.int64)
        fresh = np.flatnonzero(np.fromiter((k not in old for k in new_keys.tolist()), dtype=bool, count=new_keys.size))
        if gone.size:
            self.index.remove_ids(_faiss().IDSelectorBatch(gone))
        if fresh.size:
            x = vectors()
            self.index.add_with_ids(np.ascontiguousarray(x[fresh]), np.asarray(ids, dtype=np.int64)[fresh])
        self.ids, self.keys = np.asarray(ids, dtype=np.int64), new_keys
        return {"removed": int(gone.size), "added": int(fresh.size)}

    @property
    def worthwhile(self) -> bool:
        """Whether the tuned index scans few enough lists to beat an exact search."""
        return int(self.params["nprobe"]) <= MAX_SCAN_SHARE * int(self.params["nlist"])

    # -- searching -----------------------------------------------------------------------
    def candidates(self, q: np.ndarray, kc: int, allowed: np.ndarray | None = None) -> np.ndarray:
        """Candidate rows (positions in `ids`, -1 padded) of each query: faiss's kc best under `allowed`
        (a boolean per row)."""
        faiss = _faiss()
        kw: dict[str, Any] = {"nprobe": int(self.params["nprobe"])}
        if allowed is not None:
            bitmap = np.packbits(_id_bitmap(self.ids, allowed), bitorder="little")
            kw["sel"] = faiss.IDSelectorBitmap(len(bitmap) * 8, faiss.swig_ptr(bitmap))
        sp = faiss.SearchParametersIVF(**kw)
        out = np.full((q.shape[0], kc), -1, dtype=np.int64)
        for s in range(0, q.shape[0], _BATCH):
            _d, found = self.index.search(np.ascontiguousarray(q[s:s + _BATCH]), kc, params=sp)
            pos = np.searchsorted(self.ids, np.maximum(found, 0))
            out[s:s + _BATCH] = np.where(found >= 0, np.minimum(pos, len(self.ids) - 1), -1)
        return out

    def search(self, q: np.ndarray, x: np.ndarray, k: int, *, allowed: np.ndarray | None = None,
               exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest rows of x (the indexed vectors, in `ids` order) of each query, re-ranked exactly."""
        extra = 0 if exclude is None else 1
        cand = self.candidates(q, min(k + extra + 4, len(self.ids)), allowed)
        return exact_topk(q, x, cand, k, exclude=exclude)

    # -- recall --------------------------------------------------------------------------
    def tune(self, x: np.ndarray, target: float = RECALL_TARGET) -> dict[str, Any]:
        """Raise nprobe until the measured recall reaches the target (or every list is scanned)."""
        nlist = int(self.params["nlist"])
        nprobe = max(1, int(self.params.get("nprobe", 1)))
        exact = _Exact(x)
        while True:
            self.params["nprobe"] = nprobe
            r = self.recall(x, exact=exact)
            if r["recall"] >= target or nprobe >= nlist:
                return r
            nprobe = min(nlist, nprobe * 2)

    def recall(self, x: np.ndarray, *, exact: "_Exact | None" = None) -> dict[str, Any]:
        """Recall@k of the self-search against exact top-k on a seeded sample of rows (stored in params)."""
        exact = exact or _Exact(x)
        t0 = time.perf_counter()
        _ai, asims = self.search(x[exact.rows], x, exact.k, exclude=exact.rows)
        out = {"recall": recall_at_k(asims, exact.sims), "recall_k": exact.k, "recall_queries": int(len(exact.rows)),
               "recall_seed": SEED, "recall_seconds": round(time.perf_counter() - t0 + exact.seconds, 3)}
        self.params.update(out)
        return out

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        _faiss().write_index(self.index, str(tmp))
        side = path.with_name(path.name + ".npz")
        tmp_side = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp_side, ids=self.ids, keys=self.keys, params=np.array(json.dumps(self.params)))
        tmp.replace(path)
        tmp_side.replace(side)

    @classmethod
    def load(cls, path: Path) -> "AnnIndex | None":
        """The stored index, or None when it is missing, damaged or does not match its sidecar."""
        side = path.with_name(path.name + ".npz")
        if not path.is_file() or not side.is_file():
            return None
        try:
            with np.load(side, allow_pickle=False) as z:
                ids, keys, params = z["ids"], z["keys"], json.loads(str(z["params"]))
            index = _faiss().read_index(str(path))
        except (OSError, KeyError, ValueError, EOFError, RuntimeError, Exception):  # faiss raises RuntimeError
            return None
        if index.ntotal != len(ids) or len(ids) != len(keys) or not isinstance(params, dict) or "nprobe" not in params:
            return None
        return cls(index=index, ids=ids, keys=keys, params=params)


class _Exact:
    """Exact top-k of a seeded sample of rows (the recall's reference), computed once per measurement."""

    def __init__(self, x: np.ndarray, k: int = RECALL_K, sample: int = RECALL_SAMPLE):
        n = x.shape[0]
        self.rows = np.sort(np.random.default_rng(SEED).choice(n, size=min(n, sample), replace=False))
        self.k = min(k, n - 1)
        t0 = time.perf_counter()
        _i, self.sims = knn_query(x[self.rows], x, self.k, exclude=self.rows, assume_normalised=True)
        self.seconds = time.perf_counter() - t0


def _id_bitmap(ids: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """A boolean per faiss id 0..max(ids): True for the allowed rows' ids."""
    bits = np.zeros(int(ids[-1]) + 1 if len(ids) else 1, dtype=bool)
    bits[ids[np.asarray(allowed, dtype=bool)]] = True
    return bits


def recall_at_k(approx_sims: np.ndarray, exact_sims: np.ndarray, eps: float = 1e-9) -> float:
    """Share of the exact k neighbours matched: a found neighbour counts when its similarity reaches
    the exact k-th (ann-benchmarks' rule; ties are not misses)."""
    kth = exact_sims[:, -1:]
    valid = np.isfinite(exact_sims).sum()
    if valid == 0:
        return 1.0
    hits = (np.isfinite(approx_sims) & (approx_sims >= kth - eps)).sum(axis=1)
    return float(np.minimum(hits, np.isfinite(exact_sims).sum(axis=1)).sum() / valid)


def self_knn(ann: AnnIndex, x: np.ndarray, k: int, progress: Callable[[int, int], None] | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """The approximate k nearest other rows of every row of x (the indexed vectors), re-ranked exactly."""
    n = x.shape[0]
    idx = np.full((n, k), -1, dtype=np.int64)
    sims = np.full((n, k), -np.inf)
    step = 32768
    for s in range(0, n, step):
        rows = np.arange(s, min(n, s + step))
        idx[rows], sims[rows] = ann.search(x[rows], x, k, exclude=rows)
        if progress:
            progress(int(rows[-1]) + 1, n)
    return idx, sims
