"""Exact k nearest neighbours by cosine similarity, in bounded memory.

How it stays exact and cheap:
- The screen is float32 matrix products over tiles whose size adapts to the memory available
  (a tile never exceeds `max_tile_bytes`, default 256 MB or 1/8 of the available memory).
  For the self graph only the upper triangle of tiles is computed; each tile updates its rows
  and (transposed) its columns.
- Each row keeps a running top-(k + SLACK) list; a tile only offers the entries that reach the
  row's current threshold, so selection costs a comparison per entry, not a sort.
- The decision is float64: the retained candidates are re-scored in float64 and ordered by
  (similarity descending, index ascending). A row whose float32 window cannot prove that no
  outsider could beat its k-th neighbour (near-ties closer than the float32 error bound) is
  recomputed in float64 against every vector.

Ties: equal similarities are broken by the lower index (for the store: the lower prompt id,
since vectors are ordered by prompt id). A row never counts itself (by index, not by value:
a duplicate vector at another index is a neighbour like any other).
Rows with fewer than k other vectors get -1 / -inf padding at the end.
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from taxonomy_store.metrics.blas import SMALL_BATCH, one_blas_thread

SLACK = 6
DEFAULT_MAX_TILE_BYTES = 256 * 1024 * 1024

Progress = Callable[[int, int], None] | None


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float32, C-contiguous (all-zero rows stay zero)."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-d array of vectors, got shape {x.shape}")
    out = np.empty(x.shape, dtype=np.float32)
    step = 8192  # in chunks: no float64 copy of the whole matrix
    for s in range(0, x.shape[0], step):
        chunk = x[s : s + step].astype(np.float64)
        norms = np.sqrt((chunk * chunk).sum(axis=1, keepdims=True))
        norms[norms == 0] = 1.0
        out[s : s + step] = chunk / norms
    return out


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo, else free physical pages, else 2 GB."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2 * 1024**3


def tile_rows(n_cols: int, max_tile_bytes: int | None = None, *, itemsize: int = 4) -> int:
    """Rows per similarity tile so that one tile (and its boolean mask) stays within budget."""
    budget = max_tile_bytes or min(DEFAULT_MAX_TILE_BYTES, available_memory_bytes() // 8)
    budget = max(budget, 1 << 20)
    return int(max(1, min(4096, budget // max(1, n_cols * (itemsize + 1)))))


def _eps(dim: int) -> float:
    # Bound on |float32 dot - exact dot| for vectors of norm <= 1 (recursive summation: d * 2^-24).
    return 1.01 * max(dim, 8) * 2.0**-24 + 1e-7


def _exact_dots(q: np.ndarray, cand: np.ndarray) -> np.ndarray:
    """q (b, d) · cand (b, c, d) -> (b, c), products and sums in float64. One routine (the same
    einsum inner loop over d for every pair) everywhere, so equal vectors give bit-equal values."""
    return np.einsum("bkd,bd->bk", cand, q, dtype=np.float64, casting="safe")


_EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)
_LOW = np.uint64(0xFFFFFFFF)


def _pack(sim: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """One uint64 per candidate whose ascending order is (similarity descending, index ascending)."""
    u = np.ascontiguousarray(sim, dtype=np.float32).view(np.uint32)
    asc = np.where(u & np.uint32(0x80000000), ~u, u | np.uint32(0x80000000))  # ascending with the float
    return ((~asc).astype(np.uint64) << np.uint64(32)) | idx.astype(np.uint64)


def _unpack(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    empty = keys == _EMPTY
    asc = ~((keys >> np.uint64(32)).astype(np.uint32))
    u = np.where(asc & np.uint32(0x80000000), asc & np.uint32(0x7FFFFFFF), ~asc)
    sim = u.view(np.float32)
    idx = (keys & _LOW).astype(np.int64)
    return np.where(empty, -1, idx), np.where(empty, np.float32(-np.inf), sim)


class _RunningTopK:
    """Per-row running top-K by float32 similarity, ties to the lower index (packed sort keys)."""

    def __init__(self, n_rows: int, K: int):
        self.K = K
        self.keys = np.full((n_rows, K), _EMPTY, dtype=np.uint64)
        self.thr = np.full(n_rows, -np.inf, dtype=np.float32)

    @property
    def idx(self) -> np.ndarray:
        return _unpack(self.keys)[0]

    @property
    def sim(self) -> np.ndarray:
        return _unpack(self.keys)[1]

    def _thresholds(self, rows: np.ndarray, view: np.ndarray, self_offset: int | None) -> np.ndarray:
        """Each row's entry threshold for this tile: its current K-th value, or for rows not yet
        full a seed from this tile. The K-th largest of any subset is a lower bound of the K-th
        largest overall, so nothing below the seed can make the top K."""
        K = self.K
        n_cand = view.shape[1]
        thr = self.thr[rows].copy()
        unfilled = self.keys[rows, K - 1] == _EMPTY
        if unfilled.any() and n_cand > K:
            sample = np.array(view[unfilled], dtype=np.float32)
            if self_offset is not None:
                r = np.flatnonzero(unfilled)
                c = r + self_offset
                ok = (c >= 0) & (c < n_cand)
                sample[np.flatnonzero(ok), c[ok]] = -np.inf
            seed = np.partition(sample, n_cand - K, axis=1)[:, n_cand - K]
            thr[unfilled] = np.maximum(thr[unfilled], seed)
        return thr

    @staticmethod
    def _above(tile: np.ndarray, thr_r: np.ndarray | None, thr_c: np.ndarray | None):
        """(rows, cols, values) of tile entries reaching the row threshold (thr_r) or the column
        threshold (thr_c). One scalar comparison pass at the lowest threshold (cheap), then the
        exact per-row/column test on the few survivors; a broadcast pass when thresholds spread."""
        ths = [t for t in (thr_r, thr_c) if t is not None]
        lo = min(float(t.min()) for t in ths)
        med = min(float(np.median(t)) for t in ths)
        if np.isfinite(lo) and lo >= med - 0.05:
            flat = np.flatnonzero(tile >= np.float32(lo))
        else:
            mask = None
            if thr_r is not None:
                mask = tile >= thr_r[:, None]
            if thr_c is not None:
                mc = tile >= thr_c[None, :]
                mask = mc if mask is None else (mask | mc)
            flat = np.flatnonzero(mask)  # type: ignore[arg-type]  # thr_r or thr_c is given: mask is set
        rr, cr = np.divmod(flat, tile.shape[1])
        return rr, cr, tile.ravel()[flat]

    def offer(self, rows: np.ndarray, tile: np.ndarray, col0: int, *, self_offset: int | None = None) -> None:
        """Offer a tile (rows of `tile` = `rows`, C-contiguous). col0: global index of the tile's
        first column. self_offset: tile column where row i meets itself (excluded)."""
        thr = self._thresholds(rows, tile, self_offset)
        rr, cr, vals = self._above(tile, thr, None)
        keep = vals >= thr[rr]
        if self_offset is not None:
            keep &= (cr - rr) != self_offset
        if keep.any():
            self._merge(rows, rr[keep], cr[keep].astype(np.int64) + col0, vals[keep])

    def offer_pair(self, rows_i: np.ndarray, rows_j: np.ndarray, tile: np.ndarray) -> None:
        """An off-diagonal tile of the self graph: rows_i x rows_j, updating both sides."""
        thr_i = self._thresholds(rows_i, tile, None)
        thr_j = self._thresholds(rows_j, tile.T, None)
        rr, cr, vals = self._above(tile, thr_i, thr_j)
        a = vals >= thr_i[rr]
        if a.any():
            self._merge(rows_i, rr[a], rows_j[cr[a]], vals[a])
        b = vals >= thr_j[cr]
        if b.any():
            o = np.argsort(cr[b], kind="stable")
            self._merge(rows_j, cr[b][o], rows_i[rr[b][o]], vals[b][o])

    def _merge(self, rows: np.ndarray, rr: np.ndarray, cand: np.ndarray, vals: np.ndarray) -> None:
        """rr sorted ascending: per affected row, sort its K kept keys with its new keys, keep K."""
        K = self.K
        local, starts, counts = np.unique(rr, return_index=True, return_counts=True)
        g = rows[local]
        width = int(counts.max())
        pos = np.arange(rr.size) - np.repeat(starts, counts)
        slot = np.repeat(np.arange(local.size), counts)
        pad = np.full((local.size, K + width), _EMPTY, dtype=np.uint64)
        pad[:, :K] = self.keys[g]
        pad[slot, K + pos] = _pack(vals, cand)
        pad.sort(axis=1)
        self.keys[g] = pad[:, :K]
        _, s = _unpack(pad[:, K - 1])
        self.thr[g] = s


def _finish(
    q: np.ndarray, x: np.ndarray, top: _RunningTopK, k: int, exclude: np.ndarray | None, max_tile_bytes: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """float64 decision over the float32 candidates; exact fallback rows where the window is too tight."""
    n_q, K = top.keys.shape
    top_idx, top_sim = top.idx, top.sim
    out_idx = np.full((n_q, k), -1, dtype=np.int64)
    out_sim = np.full((n_q, k), -np.inf, dtype=np.float64)
    if k == 0 or n_q == 0:
        return out_idx, out_sim
    eps = _eps(x.shape[1])
    n_avail = x.shape[0] - (0 if exclude is None else 1)
    # Complete: the K-th float32 candidate lies below the k-th by more than twice the float32 error,
    # or the row already holds every other vector.
    kth = top_sim[:, min(k, K) - 1].astype(np.float64)
    last = top_sim[:, K - 1].astype(np.float64)
    complete = (top_idx[:, K - 1] < 0) | (last < kth - 2 * eps) | (K >= n_avail)
    step = max(1, min(4096, (64 << 20) // max(1, K * x.shape[1] * 8)))
    for s in range(0, n_q, step):
        e = min(n_q, s + step)
        ci = top_idx[s:e]
        cand = x[np.where(ci < 0, 0, ci)]
        sims = _exact_dots(q[s:e], cand)
        sims = np.where(ci < 0, -np.inf, sims)
        key_idx = np.where(ci < 0, np.iinfo(np.int64).max, ci)
        order = _row_order(key_idx, sims)
        ci_sorted = np.take_along_axis(ci, order, axis=1)[:, :k]
        si_sorted = np.take_along_axis(sims, order, axis=1)[:, :k]
        out_idx[s:e, : ci_sorted.shape[1]] = ci_sorted
        out_sim[s:e, : si_sorted.shape[1]] = si_sorted
    redo = np.flatnonzero(~complete)
    if redo.size:
        ex = None if exclude is None else exclude[redo]
        ri, rs = _exact_rows(q[redo], x, k, ex, max_tile_bytes)
        out_idx[redo], out_sim[redo] = ri, rs
    out_idx[out_idx < 0] = -1
    return out_idx, out_sim


def _row_order(key_idx: np.ndarray, sims: np.ndarray) -> np.ndarray:
    """Per row: order by similarity descending, then index ascending."""
    order = np.argsort(key_idx, axis=1, kind="stable")
    s2 = np.take_along_axis(sims, order, axis=1)
    o2 = np.argsort(-s2, axis=1, kind="stable")
    return np.take_along_axis(order, o2, axis=1)


def _exact_rows(q: np.ndarray, x: np.ndarray, k: int, exclude: np.ndarray | None, max_tile_bytes: int | None):
    """Slow path: float64 against every vector (rare: rows with near-ties at the k-th place)."""
    n = x.shape[0]
    out_idx = np.full((q.shape[0], k), -1, dtype=np.int64)
    out_sim = np.full((q.shape[0], k), -np.inf)
    x64 = None
    step = max(1, tile_rows(n, max_tile_bytes, itemsize=8) // 2)
    for s in range(0, q.shape[0], step):
        e = min(q.shape[0], s + step)
        q64 = q[s:e].astype(np.float64)
        if x64 is None:
            x64 = x.astype(np.float64)
        full = q64 @ x64.T
        if exclude is not None:
            ex = exclude[s:e]
            ok = ex >= 0
            full[np.flatnonzero(ok), ex[ok]] = -np.inf
        kk = min(k, n - (0 if exclude is None else 1))
        if kk <= 0:
            continue
        kth = -np.partition(-full, kk - 1, axis=1)[:, kk - 1]
        for r in range(e - s):
            cand = np.flatnonzero(full[r] >= kth[r] - 1e-9)
            if exclude is not None:
                cand = cand[cand != exclude[s + r]]
            sims = _exact_dots(q[s + r : s + r + 1], x[cand][None, :, :])[0]
            order = np.lexsort((cand, -sims))[:kk]
            out_idx[s + r, :kk] = cand[order]
            out_sim[s + r, :kk] = sims[order]
    return out_idx, out_sim


def knn(
    x: np.ndarray,
    k: int,
    *,
    max_tile_bytes: int | None = None,
    block_size: int | None = None,
    progress: Progress = None,
    assume_normalised: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest other rows of every row of x: (indices (n, k) int64, cosine similarities (n, k) float64)."""
    x = x if assume_normalised and x.dtype == np.float32 and x.flags.c_contiguous else normalise(x)
    n = x.shape[0]
    k = int(k)
    if k < 1:
        raise ValueError("k must be at least 1")
    K = max(1, min(k + SLACK, n - 1))
    top = _RunningTopK(n, K)
    if n > 1:
        if block_size:
            b = int(block_size)
        else:
            b = tile_rows(n, max_tile_bytes) if n <= 4096 else min(2048, tile_rows(2048, max_tile_bytes))
        b = min(max(b, K + 1), n)
        starts = list(range(0, n, b))
        total = len(starts) * (len(starts) + 1) // 2
        done = 0
        for bi, i0 in enumerate(starts):
            i1 = min(n, i0 + b)
            rows_i = np.arange(i0, i1)
            for j0 in starts[bi:]:
                j1 = min(n, j0 + b)
                tile = x[i0:i1] @ x[j0:j1].T
                if j0 == i0:
                    top.offer(rows_i, tile, j0, self_offset=0)
                else:
                    top.offer_pair(rows_i, np.arange(j0, j1), tile)
                done += 1
                if progress:
                    progress(done, total)
    exclude = np.arange(n)
    return _finish(x, x, top, k, exclude, max_tile_bytes)


def knn_query(
    q: np.ndarray,
    x: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    max_tile_bytes: int | None = None,
    block_size: int | None = None,
    progress: Progress = None,
    assume_normalised: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of x for each row of q; exclude[i] (a row of x, or -1) is never i's neighbour."""
    if not assume_normalised:
        q, x = normalise(q), normalise(x)
    n_q, n = q.shape[0], x.shape[0]
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64)
    K = max(1, min(k + SLACK, n - (0 if exclude is None else 1)))
    top = _RunningTopK(n_q, K)
    if n_q and n and n_q <= SMALL_BATCH:
        with one_blas_thread():  # a few queries: memory-bound, see blas.py
            _scan(q, x, top, K, exclude, max_tile_bytes, block_size, progress)
    elif n_q and n:
        _scan(q, x, top, K, exclude, max_tile_bytes, block_size, progress)
    return _finish(q, x, top, k, exclude, max_tile_bytes)


def _scan(q: np.ndarray, x: np.ndarray, top: "_RunningTopK", K: int, exclude: np.ndarray | None,
          max_tile_bytes: int | None, block_size: int | None, progress: Progress) -> None:
    """Every similarity of q against x, in tiles, offered to the running top-K."""
    n_q, n = q.shape[0], x.shape[0]
    bc = max(K + 1, min(n, block_size or 8192))
    br = int(block_size) if block_size else max(1, tile_rows(bc, max_tile_bytes))
    total = -(-n_q // br) * -(-n // bc)
    done = 0
    for i0 in range(0, n_q, br):
        i1 = min(n_q, i0 + br)
        rows = np.arange(i0, i1)
        for j0 in range(0, n, bc):
            j1 = min(n, j0 + bc)
            tile = q[i0:i1] @ x[j0:j1].T
            if exclude is not None:
                ex = exclude[i0:i1]
                hit = (ex >= j0) & (ex < j1)
                tile[np.flatnonzero(hit), ex[hit] - j0] = -np.inf
            top.offer(rows, tile, j0)
            done += 1
            if progress:
                progress(done, total)
    # -inf entries (the excluded self) never become neighbours.
    top.keys[~np.isfinite(top.sim)] = _EMPTY


def merge_topk(
    idx_a: np.ndarray, sim_a: np.ndarray, idx_b: np.ndarray, sim_b: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-k of two candidate lists (-1 = empty slot), ties to the lower index."""
    ci = np.concatenate([idx_a, idx_b], axis=1)
    cs = np.concatenate([sim_a.astype(np.float64), sim_b.astype(np.float64)], axis=1)
    cs = np.where(ci < 0, -np.inf, cs)
    key = np.where(ci < 0, np.iinfo(np.int64).max, ci)
    order = _row_order(key, cs)[:, :k]
    oi = np.take_along_axis(ci, order, axis=1)
    os_ = np.take_along_axis(cs, order, axis=1)
    oi = np.where(np.isfinite(os_), oi, -1)
    if oi.shape[1] < k:
        pad = k - oi.shape[1]
        oi = np.pad(oi, ((0, 0), (0, pad)), constant_values=-1)
        os_ = np.pad(os_, ((0, 0), (0, pad)), constant_values=-np.inf)
    return oi, os_


def _key_lt(sim_a: np.ndarray, idx_a: np.ndarray, sim_b: np.ndarray, idx_b: np.ndarray) -> np.ndarray:
    """(sim_a, idx_a) ranks before (sim_b, idx_b): higher similarity, then lower index."""
    return (sim_a > sim_b) | ((sim_a == sim_b) & (idx_a < idx_b))


def _carry_over(old_keys: np.ndarray, old_idx: np.ndarray, old_sim: np.ndarray, new_keys: np.ndarray):
    """The old graph on the new rows: (kept rows, fresh rows, and per kept row its surviving
    neighbours as new row numbers compacted to the front, their similarities, their count)."""
    old_pos = {key: p for p, key in enumerate(old_keys.tolist())}
    new_to_old = np.array([old_pos.get(key, -1) for key in new_keys.tolist()], dtype=np.int64)
    kept_rows = np.flatnonzero(new_to_old >= 0)
    fresh = np.flatnonzero(new_to_old < 0)
    old_to_new = np.full(old_keys.size, -1, dtype=np.int64)
    old_to_new[new_to_old[kept_rows]] = kept_rows
    nb = old_idx[new_to_old[kept_rows]]
    ns = old_sim[new_to_old[kept_rows]].astype(np.float64)
    mapped = np.where(nb >= 0, old_to_new[np.where(nb < 0, 0, nb)], -1)
    # Compact: surviving neighbours first, in their order (a stable sort on "dropped").
    order = np.argsort(mapped < 0, axis=1, kind="stable")
    ci = np.take_along_axis(mapped, order, axis=1)
    cs = np.where(ci >= 0, np.take_along_axis(ns, order, axis=1), -np.inf)
    return kept_rows, fresh, ci, cs, (ci >= 0).sum(axis=1)


def _admit_fresh(ci: np.ndarray, cs: np.ndarray, length: np.ndarray, fi: np.ndarray, fs: np.ndarray, kg: int):
    """Merge fresh candidates into kept rows' lists: a candidate is provably in a row's list only
    if it ranks before the row's last kept entry."""
    last = np.maximum(length - 1, 0)
    last_i = ci[np.arange(ci.shape[0]), last][:, None]
    last_s = cs[np.arange(ci.shape[0]), last][:, None]
    ok = (fi >= 0) & _key_lt(fs, fi, last_s, last_i)
    return merge_topk(ci, cs, np.where(ok, fi, -1), np.where(ok, fs, -np.inf), kg)


def update_knn(
    old_keys: np.ndarray,
    old_idx: np.ndarray,
    old_sim: np.ndarray,
    new_keys: np.ndarray,
    vectors: np.ndarray | Callable[[], np.ndarray],
    k: int,
    *,
    max_changed_share: float = 0.25,
    max_tile_bytes: int | None = None,
    block_size: int | None = None,
    assume_normalised: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """The self kNN graph of the new rows, reusing a graph built on an earlier version of them.

    old_keys / new_keys identify each row's vector (e.g. "prompt id:text hash"); rows are matched
    by key, and both lists must be in the same order as the vectors (ascending ids). A stored
    row is an exact prefix of that row's neighbour list: -1 after it means "not kept", since a
    graph stored with width kg only holds each row's kg best. Rules:
    - a kept row drops neighbours that were removed or changed; it still holds an exact prefix;
    - fresh (new or changed) vectors join a kept row's list when they rank before its last entry;
    - a row left with fewer than k entries, and every fresh row, is recomputed against all rows.
    So removals and label edits need no vectors at all (`vectors` may be a callable, called only
    when needed). The first k columns equal `knn(x, k)`; the result keeps the old width.
    """
    old_keys = np.asarray(old_keys)
    new_keys = np.asarray(new_keys)
    kg = max(int(k), old_idx.shape[1])
    n = new_keys.size
    loaded: list[np.ndarray] = []

    def x() -> np.ndarray:
        if not loaded:
            v = vectors() if callable(vectors) else vectors
            # Vectors given as normalised float32 are used bit for bit (re-normalising would move
            # similarities by ~1e-8 and make an updated graph differ from a fresh one).
            ok = assume_normalised and v.dtype == np.float32 and v.flags.c_contiguous
            loaded.append(v if ok else normalise(v))
        return loaded[0]

    stats = {"rows": int(n), "recomputed": 0, "merged": 0, "reused": 0, "full": False, "vectors_loaded": False}

    def full():
        stats.update(full=True, recomputed=int(n), merged=0, reused=0, vectors_loaded=True)
        i, s_ = knn(x(), kg, max_tile_bytes=max_tile_bytes, block_size=block_size, assume_normalised=True)
        return i, s_, stats

    n_old = old_keys.size
    # Small sets: a -1 may mean "no more rows" rather than "not kept"; recomputing is cheap anyway.
    if old_idx.shape[1] < k or n == 0 or n_old - 1 <= kg or n - 1 <= kg:
        return full()
    kept_rows, fresh, ci, cs, length = _carry_over(old_keys, old_idx, old_sim, new_keys)
    short = length < k
    dirty = np.concatenate([fresh, kept_rows[short]])
    if dirty.size > max_changed_share * n:
        return full()
    clean_sel = ~short
    clean = kept_rows[clean_sel]
    ci, cs, length = ci[clean_sel], cs[clean_sel], length[clean_sel]
    out_idx = np.full((n, kg), -1, dtype=np.int64)
    out_sim = np.full((n, kg), -np.inf)
    if fresh.size and clean.size:
        fi, fs = knn_query(x()[clean], x()[fresh], min(kg, fresh.size), max_tile_bytes=max_tile_bytes,
                           block_size=block_size, assume_normalised=True)
        fi = np.where(fi >= 0, fresh[np.where(fi < 0, 0, fi)], -1)
        ci, cs = _admit_fresh(ci, cs, length, fi, fs, kg)
        stats["merged"] = int(clean.size)
    else:
        stats["reused"] = int(clean.size)
    out_idx[clean], out_sim[clean] = ci[:, :kg], cs[:, :kg]
    if dirty.size:
        di, ds = knn_query(x()[dirty], x(), kg, exclude=dirty, max_tile_bytes=max_tile_bytes, block_size=block_size,
                           assume_normalised=True)
        out_idx[dirty], out_sim[dirty] = di, ds
    stats["recomputed"] = int(dirty.size)
    stats["vectors_loaded"] = bool(loaded)
    return out_idx, out_sim, stats


def mask_parts(masks: list[np.ndarray]) -> list[tuple[tuple[bool, ...], np.ndarray]]:
    """Rows grouped by the masks that hold them: (membership per mask, rows ascending) for every
    group that some mask holds. The groups are disjoint, so searching each once covers every mask."""
    if not masks:
        return []
    member = np.stack([np.asarray(m, dtype=bool) for m in masks], axis=1)
    keys, group = np.unique(member, axis=0, return_inverse=True)
    group = np.asarray(group).ravel()
    return [(tuple(bool(b) for b in key), np.flatnonzero(group == g)) for g, key in enumerate(keys) if key.any()]


def knn_query_parts(
    q: np.ndarray, parts: list[tuple[tuple[bool, ...], np.ndarray, np.ndarray]], n_masks: int, k: int,
    *, exclude: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The k nearest rows under each of n_masks masks, for each row of q (normalised float32), every
    similarity computed once: each part (membership per mask, its rows of x, their vectors) is
    searched exactly (`knn_query`) and each mask's top-k merged from its parts. Indices are rows of
    x, -1 padded; ties go to the lower row, as in `knn_query`. exclude[i] (a row of x, or -1) is
    never row i's neighbour."""
    n_q = q.shape[0]
    out = [(np.full((n_q, k), -1, dtype=np.int64), np.full((n_q, k), -np.inf)) for _ in range(n_masks)]
    for key, rows, sub in parts:
        idx, sims = _search_part(q, rows, sub, k, exclude)
        for m in range(n_masks):
            if key[m]:
                out[m] = merge_topk(out[m][0], out[m][1], idx, sims, k)
    return out


def _search_part(q: np.ndarray, rows: np.ndarray, sub: np.ndarray, k: int, exclude: np.ndarray | None):
    """One part searched: (rows of x, -1 padded; similarities). Query rows whose excluded row lies
    outside the part search it without an exclusion, so a part smaller than k gives every row it has."""
    idx = np.full((q.shape[0], k), -1, dtype=np.int64)
    sims = np.full((q.shape[0], k), -np.inf)
    if len(rows) == 0 or q.shape[0] == 0:
        return idx, sims
    ex = None
    if exclude is not None:
        exclude = np.asarray(exclude, dtype=np.int64)
        pos = np.searchsorted(rows, exclude)
        inside = (exclude >= 0) & (pos < len(rows)) & (rows[np.minimum(pos, len(rows) - 1)] == exclude)
        ex = np.where(inside, pos, -1)
    groups = [(np.arange(q.shape[0]), None)] if ex is None else [(np.flatnonzero(ex >= 0), ex), (np.flatnonzero(ex < 0), None)]
    for g, ex_g in groups:
        if len(g) == 0:
            continue
        i, s = knn_query(q[g], sub, k, exclude=None if ex_g is None else ex_g[g], assume_normalised=True)
        idx[g] = np.where(i >= 0, rows[np.maximum(i, 0)], -1)
        sims[g] = s
    return idx, sims


def knn_query_rows(q: np.ndarray, x: np.ndarray, rows: np.ndarray, k: int, *, exclude: np.ndarray | None = None,
                   chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """`knn_query` among x[rows] (rows ascending; q and x normalised float32) without copying them all:
    `chunk` rows at a time, merged. Indices are rows of x, -1 padded, ties to the lower row;
    exclude[i] (a row of x, or -1) is never row i's neighbour."""
    rows = np.asarray(rows, dtype=np.int64)
    idx = np.full((q.shape[0], k), -1, dtype=np.int64)
    sims = np.full((q.shape[0], k), -np.inf)
    for s in range(0, len(rows), chunk):
        part = rows[s:s + chunk]
        i, si = _search_part(q, part, np.ascontiguousarray(x[part]), k, exclude)
        idx, sims = merge_topk(idx, sims, i, si, k)
    return idx, sims


def knn_query_masks(
    q: np.ndarray, x: np.ndarray, k: int, masks: list[np.ndarray], *, exclude: np.ndarray | None = None,
    assume_normalised: bool = False,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`knn_query` under several boolean masks over the rows of x at once, each similarity computed once."""
    if not assume_normalised:
        q, x = normalise(q), normalise(x)
    parts = [(key, rows, np.ascontiguousarray(x[rows])) for key, rows in mask_parts(masks)]
    return knn_query_parts(q, parts, len(masks), k, exclude=exclude)


def exact_topk(q: np.ndarray, x: np.ndarray, cand: np.ndarray, k: int, *, exclude: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (rows of x per query, -1 padded) re-scored exactly and ordered as `knn_query` orders:
    float64 dot products of the float32 vectors, similarity descending, ties to the lower row.
    exclude[i] (a row, or -1) is never query i's neighbour. (k best, -1 / -inf padded)."""
    m = q.shape[0]
    cand = np.asarray(cand, dtype=np.int64)
    if exclude is not None:
        cand = np.where(cand == np.asarray(exclude, dtype=np.int64)[:, None], -1, cand)
    out_idx = np.full((m, k), -1, dtype=np.int64)
    out_sim = np.full((m, k), -np.inf)
    step = max(1, (64 << 20) // max(1, cand.shape[1] * x.shape[1] * 8))
    for s in range(0, m, step):
        c = cand[s:s + step]
        sims = _exact_dots(q[s:s + step], x[np.maximum(c, 0)])
        sims = np.where(c >= 0, sims, -np.inf)
        key_idx = np.where(c >= 0, c, np.iinfo(np.int64).max)
        order = _row_order(key_idx, sims)[:, :k]
        oi, os_ = np.take_along_axis(c, order, axis=1), np.take_along_axis(sims, order, axis=1)
        kk = oi.shape[1]
        out_idx[s:s + step, :kk] = np.where(np.isfinite(os_), oi, -1)
        out_sim[s:s + step, :kk] = os_
    return out_idx, out_sim
