"""Approximate nearest neighbours for large prompt sets: a faiss HNSW graph index, re-ranked exactly.

Why faiss (faiss-cpu) and HNSW (`IndexHNSWSQ`, vectors kept as float16 in the graph), and why no
longer IVF-Flat:
- Measured on the 1M generated store (hashing:384, `benchmarks/million_search.py`): IVF-Flat
  needed about half of its lists scanned per query for recall@10 0.99, as much work as exact
  top-k, so it was declined and CP@10 and the suspects graph stayed exact (about an hour on two
  cores). HNSW reaches recall 0.99 visiting a few thousand vectors per query (`efSearch` of tens),
  so the whole self-kNN of a million rows takes minutes (docs/BENCHMARKS.md, "A million prompts").
- faiss rather than hnswlib or usearch: one library for the index, its persistence
  (`write_index`/`read_index`, one file; a damaged file fails to read and is rebuilt, never
  trusted), filtered searches (`IDSelectorBitmap`, a boolean per row: masks stay masks) and
  OpenMP-parallel builds and batch searches.
- The graph's copy of the vectors is float16 (`ScalarQuantizer.QT_fp16`), not float32: a walk is
  bound by fetching vectors from memory, and half the bytes made walks 1.24-1.78x faster at
  efSearch 183-413 and the build 1.29x faster, with recall@10 after the exact re-rank as high or
  higher (178,872 generated rows, same run: `benchmarks/hnsw_storage.py`; at 1M CP + suspects went
  from 951 s to 525 s with the finer tuning steps; docs/BENCHMARKS.md, "float16 in the graph").
  Only the walk sees float16: every candidate is re-scored exactly from the stored float32 vectors.
- One knob is tuned on measured recall: `efSearch` is raised until the recall reaches
  RECALL_TARGET; past MAX_EF the index is declined and the search stays exact (and says why).
- Updates: HNSW cannot remove a vector, so a removed or changed row is a tombstone (its faiss
  label is left out of every search by the selector) and a new or changed row is added. When
  tombstones pass REBUILD_SHARE of the index it is rebuilt.
- Filters are applied after one shared walk where they can be (`search_masks`): one unfiltered
  walk returns SHARED_K candidates, and each mask letting at least FILTER_AFTER_SHARE of the rows
  through keeps its own among them; a row left with fewer than k of a mask's rows is searched
  again under that mask alone. Measured at 1M (docs/BENCHMARKS.md): one walk for the CP graph,
  the suspects graph and both label halves of a calibration, instead of one filtered walk each.
  Walks of indexed rows (self-graphs, calibration) are kept for the process (`self_walk`), so the
  second graph of the same rows costs no walk.
- A filtered search lets fewer rows through, and a graph walk then meets fewer of them: efSearch
  is raised in proportion to the share filtered out (capped at MAX_EF * 4).

Every candidate faiss finds is re-scored exactly (`metrics.similarity.exact_topk`: float64 dot
products of the stored float32 vectors, ties to the lower row), so the similarities reported are
those of the exact path for the neighbours found; only *which* neighbours may differ, and the
recall says how often. Recall follows ann-benchmarks: a found neighbour counts when its
similarity reaches the exact k-th similarity (so ties are not misses), averaged over a seeded
sample of queries, measured against exact top-k whenever the index is built or updated.

Rows are identified by keys (prompt id and text hash); faiss labels are insertion order, and
`labels[i]` is row i's (row i = `ids[i]`, ascending).
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
# Tuning aims above the target: the sample's recall is an estimate, and every graph must hold 0.99
# on the whole set (tests/test_approximate.py compares whole graphs; million_search.py 10,000 queries).
TUNE_AIM = 0.992
RECALL_SAMPLE = 1000  # queries, seeded
RECALL_K = 10
# HNSW parameters (measured on hashing:384 generated prompts, 200k and 1M: benchmarks/million_search.py)
HNSW_M = 16  # graph degree
INDEX_KIND = "HNSW,SQfp16"  # faiss's factory name: the graph walks float16 copies of the vectors
EF_CONSTRUCTION = 80
EF_START = 16
# efSearch grows by this factor per tuning step: each step's walks cost about in proportion to efSearch,
# so a coarse step overshoots the aim (1.5x steps at 1M: 275 fell short, 413 gave 0.9955)
TUNE_STEP = 1.25
# Past this efSearch a query visits so much of the graph that the index is declined (stays exact).
MAX_EF = 1024
REBUILD_SHARE = 0.10  # tombstones past this share of the index: rebuilt
SEED = 0
_BATCH = 8192
# Filter-after: one unfiltered walk's candidates serve every mask letting through at least this share
SHARED_K = 48
FILTER_AFTER_SHARE = 0.25
_ADD_BATCH = 65536


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
    """An HNSW inner-product index over rows identified by `keys` (row i: prompt id `ids[i]`, faiss label `labels[i]`)."""

    index: Any
    ids: np.ndarray  # ascending
    keys: np.ndarray
    labels: np.ndarray  # faiss label of each row; labels not here are tombstones
    params: dict[str, Any] = field(default_factory=dict)
    # this process's unfiltered walks of indexed rows (SHARED_K candidate rows each, -1 padded; -2: not walked yet)
    _walks: np.ndarray | None = field(default=None, repr=False)
    _walks_ef: int = field(default=0, repr=False)
    # this process's count of queries walked once for every mask, and of query-mask pairs walked again
    walk_counts: dict[str, int] = field(default_factory=lambda: {"shared": 0, "walked_again": 0}, repr=False)
    _rows: np.ndarray | None = field(default=None, repr=False)

    # -- building ------------------------------------------------------------------------
    @classmethod
    def build(cls, ids: np.ndarray, keys: np.ndarray, x: np.ndarray) -> "AnnIndex":
        faiss = _faiss()
        n, d = x.shape
        index = faiss.IndexHNSWSQ(d, faiss.ScalarQuantizer.QT_fp16, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
        t0 = time.perf_counter()
        for s in range(0, n, _ADD_BATCH):
            index.add(np.ascontiguousarray(x[s:s + _ADD_BATCH]))
        params = {"library": "faiss", "faiss_version": faiss.__version__, "index": INDEX_KIND, "metric": "inner_product",
                  "M": HNSW_M, "efConstruction": EF_CONSTRUCTION, "efSearch": EF_START,
                  "rerank": "exact float64 dot products of the stored float32 vectors",
                  "build_seconds": round(time.perf_counter() - t0, 3)}
        return cls(index=index, ids=np.asarray(ids, dtype=np.int64), keys=np.asarray(keys),
                   labels=np.arange(n, dtype=np.int64), params=params)

    def update(self, ids: np.ndarray, keys: np.ndarray, vectors: Callable[[], np.ndarray]) -> dict[str, int]:
        """Bring the index to these rows: removed and changed rows become tombstones, new and changed
        ones are added."""
        old = dict(zip(self.keys.tolist(), self.labels.tolist()))
        new_keys = np.asarray(keys)
        kept = np.fromiter((old.get(k, -1) for k in new_keys.tolist()), dtype=np.int64, count=new_keys.size)
        fresh = np.flatnonzero(kept < 0)
        removed = len(old) - (new_keys.size - fresh.size)
        labels = kept.copy()
        if fresh.size:
            x = vectors()
            labels[fresh] = np.arange(self.index.ntotal, self.index.ntotal + fresh.size, dtype=np.int64)
            self.index.add(np.ascontiguousarray(x[fresh]))
        self.ids, self.keys, self.labels = np.asarray(ids, dtype=np.int64), new_keys, labels
        self._walks = self._rows = None
        return {"removed": int(removed), "added": int(fresh.size)}

    @property
    def tombstones(self) -> int:
        return int(self.index.ntotal - len(self.labels))

    @property
    def worthwhile(self) -> bool:
        """Whether the tuned index visits little enough of the graph to beat an exact search."""
        return int(self.params["efSearch"]) <= MAX_EF

    # -- searching -----------------------------------------------------------------------
    def _row_of_label(self) -> np.ndarray:
        if self._rows is None or len(self._rows) != self.index.ntotal:
            row = np.full(self.index.ntotal, -1, dtype=np.int64)
            row[self.labels] = np.arange(len(self.labels), dtype=np.int64)
            self._rows = row
        return self._rows

    def candidates(self, q: np.ndarray, kc: int, allowed: np.ndarray | None = None, ef: int | None = None) -> np.ndarray:
        """Candidate rows (positions in `ids`, -1 padded) of each query: faiss's kc best under `allowed`
        (a boolean per row) and never a tombstone. ef: the walk's efSearch before the filter's raise
        (default: the tuned one)."""
        faiss = _faiss()
        ef = int(self.params["efSearch"]) if ef is None else int(ef)
        kw: dict[str, Any] = {}
        live = None
        if allowed is not None or self.tombstones:
            live = np.zeros(self.index.ntotal, dtype=bool)
            live[self.labels if allowed is None else self.labels[np.asarray(allowed, dtype=bool)]] = True
            share = max(live.mean(), 1e-9)
            ef = int(min(MAX_EF * 4, math.ceil(ef / share)))  # a filtered walk meets fewer allowed rows
            bitmap = np.packbits(live, bitorder="little")
            kw["sel"] = faiss.IDSelectorBitmap(live.size, faiss.swig_ptr(bitmap))
        sp = faiss.SearchParametersHNSW(efSearch=max(ef, kc), **kw)
        row = self._row_of_label()
        out = np.full((q.shape[0], kc), -1, dtype=np.int64)
        for s in range(0, q.shape[0], _BATCH):
            _d, found = self.index.search(np.ascontiguousarray(q[s:s + _BATCH]), kc, params=sp)
            out[s:s + _BATCH] = np.where(found >= 0, row[np.maximum(found, 0)], -1)
        return out

    def search(self, q: np.ndarray, x: np.ndarray, k: int, *, allowed: np.ndarray | None = None,
               exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest rows of x (the indexed vectors, in `ids` order) of each query, re-ranked exactly."""
        extra = 0 if exclude is None else 1
        cand = self.candidates(q, min(k + extra + 4, len(self.ids)), allowed)
        return exact_topk(q, x, cand, k, exclude=exclude)

    def self_walk(self, rows: np.ndarray, q: np.ndarray, ef: int) -> np.ndarray:
        """The unfiltered walk (SHARED_K candidate rows, faiss's order, -1 padded) of each of these
        indexed rows (q: their vectors) at efSearch `ef` or more: walked once per process, a walk
        at a higher efSearch standing in for one at a lower."""
        if self._walks is None or self._walks_ef < ef:
            self._walks = np.full((len(self.ids), SHARED_K), -2, dtype=np.int32)
            self._walks_ef = int(ef)
        rows = np.asarray(rows, dtype=np.int64)
        todo = np.flatnonzero(self._walks[rows, 0] == -2)
        for s in range(0, todo.size, _ADD_BATCH):
            part = todo[s:s + _ADD_BATCH]
            self._walks[rows[part]] = self.candidates(np.ascontiguousarray(q[part]), SHARED_K, ef=self._walks_ef)
        return self._walks[rows].astype(np.int64)

    def search_masks(self, q: np.ndarray, x: np.ndarray, k: int, masks: list[np.ndarray | None], *,
                     exclude: np.ndarray | None = None, self_rows: np.ndarray | None = None, ef: int | None = None
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        """`search` under each mask (a boolean per row, None: every row), re-ranked exactly: one shared
        unfiltered walk for the masks letting through at least FILTER_AFTER_SHARE of the rows, each
        keeping its own rows among the walk's candidates; rows left with fewer than k of a mask's rows,
        and masks letting fewer through, get a walk under the mask alone.

        self_rows: the queries are these indexed rows (q = x[self_rows]), whose walks (SHARED_K candidates
        each) are kept for the process: a graph's rows. Other queries' walks return every row they found.
        ef: the shared walk's efSearch (default: the tuned one over the narrowest mask's share, as deep
        as that mask's own filtered walk; a graph tunes its own on measured recall, `tune_shared`)."""
        n = q.shape[0]
        extra = 0 if exclude is None else 1
        kk = min(k + extra + 4, len(self.ids))
        shares = [1.0 if m is None else float(np.mean(m)) for m in masks]
        cand = None
        after = [sh for sh in shares if sh >= FILTER_AFTER_SHARE]
        if after:
            # the shared walk goes as deep as the narrowest mask's filtered walk would (efSearch / share)
            if ef is None:
                ef = int(min(MAX_EF * 4, math.ceil(int(self.params["efSearch"]) / min(after))))
            # a walk not kept returns all it found (efSearch rows): more of each mask's rows, fewer walked again
            cand = self.self_walk(self_rows, q, ef) if self_rows is not None else \
                self.candidates(q, min(max(SHARED_K, kk, ef), len(self.ids)), ef=ef)
            self.walk_counts["shared"] += n
        out: list[tuple[np.ndarray, np.ndarray]] = []
        ex = None if exclude is None else np.asarray(exclude, dtype=np.int64)
        for m, sh in zip(masks, shares):
            if cand is None or sh < FILTER_AFTER_SHARE:
                out.append(self.search(q, x, k, allowed=m, exclude=ex))
                continue
            ok = cand >= 0
            if m is not None:
                ok &= np.asarray(m, dtype=bool)[np.maximum(cand, 0)]
            if ex is not None:
                ok &= cand != ex[:, None]
            # the mask's candidates in the walk's order, the first kk of them re-ranked
            order = np.argsort(~ok, axis=1, kind="stable")[:, :kk]
            mine = np.where(np.take_along_axis(ok, order, axis=1), np.take_along_axis(cand, order, axis=1), -1)
            idx, sims = exact_topk(q, x, mine, k, exclude=ex)
            available = len(self.ids) if m is None else int(np.count_nonzero(m))
            need = min(k, available - extra)
            short = np.flatnonzero(ok.sum(axis=1) < need)
            if short.size:
                self.walk_counts["walked_again"] += int(short.size)
                si, ss = self.search(q[short], x, k, allowed=m, exclude=None if ex is None else ex[short])
                idx[short], sims[short] = si, ss
            out.append((idx, sims))
        return out

    def tune_shared(self, x: np.ndarray, rows: np.ndarray, exact_sims: np.ndarray, sample: np.ndarray,
                    target: float = TUNE_AIM) -> tuple[int, float]:
        """The shared walk's efSearch for a graph of these indexed rows (`rows`, ascending): raised from
        the tuned one in TUNE_STEP steps until the graph's recall@k (k: exact_sims' columns) on `sample` (positions in rows, with
        their exact similarities among the rows) reaches the target, at most MAX_EF * 4 (as deep as the
        deepest filtered walk). Not capped at the efSearch of a walk filtered to the rows: with finer
        tuning steps the pool's efSearch can land low enough that that cap stops short of the target
        (a 3,000-row test store: 0.9884 at the cap 116). (efSearch, recall)."""
        allowed = np.zeros(len(self.ids), dtype=bool)
        allowed[rows] = True
        cap = MAX_EF * 4
        ef = int(self.params["efSearch"])
        while True:
            q = rows[sample]
            ((_i, sims),) = self.search_masks(x[q], x, exact_sims.shape[1], [allowed], exclude=q, ef=ef)
            r = recall_at_k(sims[:, :exact_sims.shape[1]], exact_sims)
            if r >= target or ef >= cap:
                return ef, r
            ef = min(cap, int(math.ceil(ef * TUNE_STEP)))

    # -- recall --------------------------------------------------------------------------
    def tune(self, x: np.ndarray, target: float = TUNE_AIM) -> dict[str, Any]:
        """Raise efSearch until the measured recall reaches the target (or passes MAX_EF: declined)."""
        ef = max(1, int(self.params.get("efSearch", EF_START)))
        exact = _Exact(x)
        while True:
            self.params["efSearch"] = ef
            r = self.recall(x, exact=exact)
            if r["recall"] >= target or ef > MAX_EF:
                return r
            ef = int(math.ceil(ef * TUNE_STEP))

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
        np.savez(tmp_side, ids=self.ids, keys=self.keys, labels=self.labels, params=np.array(json.dumps(self.params)))
        tmp.replace(path)
        tmp_side.replace(side)

    @classmethod
    def load(cls, path: Path) -> "AnnIndex | None":
        """The stored index, or None when it is missing, damaged, of another kind or does not match its sidecar."""
        side = path.with_name(path.name + ".npz")
        if not path.is_file() or not side.is_file():
            return None
        try:
            with np.load(side, allow_pickle=False) as z:
                ids, keys, labels, params = z["ids"], z["keys"], z["labels"], json.loads(str(z["params"]))
            index = _faiss().read_index(str(path))
        except (OSError, KeyError, ValueError, EOFError, RuntimeError, Exception):  # faiss raises RuntimeError
            return None
        if not isinstance(params, dict) or params.get("index") != INDEX_KIND or "efSearch" not in params:
            return None  # an index of an earlier kind (IVF-Flat, HNSW with float32 vectors) is rebuilt
        if len(ids) != len(keys) or len(labels) != len(ids) or (len(labels) and int(labels.max()) >= index.ntotal):
            return None
        return cls(index=index, ids=ids, keys=keys, labels=labels.astype(np.int64), params=params)


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
