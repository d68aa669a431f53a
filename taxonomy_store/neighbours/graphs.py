"""Cached kNN graphs of sets of stored prompts, kept in `<store>/cache/knn_*.npz`.

Exact below `settings.approx_from` rows (or when `settings.exact`, the `--exact` flag); above
it the graph comes from a faiss index kept beside it (`knn_*.faiss`, `neighbours/approximate.py`),
built once per encoder and row keys, updated in place after edits, its recall measured on a
seeded sample whenever it changes. The graph's stats say which: `exact`, and for an
approximate graph the index parameters and the measured recall.

A graph is keyed by the encoder's weights and the (prompt id, text hash) of every row, so label
and category edits reuse it as it is (no vectors read), and text edits, additions and removals
update only the affected rows (`metrics.similarity.update_knn`). Rows are ordered by prompt id;
a row's neighbours are row numbers, most similar first, ties to the lower prompt id.
"""

from __future__ import annotations

import json
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from taxonomy_store.metrics.similarity import knn, update_knn
from taxonomy_store.neighbours import approximate as ann_settings
from taxonomy_store.neighbours.approximate import RECALL_TARGET, AnnIndex, NeighbourSettings, self_knn

if TYPE_CHECKING:
    from taxonomy_store.embeddings.encoders import EncoderInfo

# progress(stage, done, total)
Progress = Callable[[str, int, int], None] | None
GRAPH_MIN_K = 20
GRAPH_EXTRA = 10
# knn(normalised float32 vectors, k, progress=..., assume_normalised=True) -> (idx, sims), as
# `metrics.similarity.knn` (the default); `distributed.topk.RayTopK` shards it over a Ray cluster.
KnnFunction = Callable[..., tuple[np.ndarray, np.ndarray]]
INCREMENTAL_SHARE = 0.05  # an approximate graph is updated in place while fewer rows than this share changed
# A set inside a larger indexed one (the encoder's pool): () -> (the pool's index, the set's rows in the
# pool, the pool's vectors, how the index was had: `index_for`'s stats). Its graph is then searched in the pool's index under a filter, so one index
# (one build) serves the pool's queries and every graph of its subsets.
Within = Callable[[], tuple[AnnIndex, np.ndarray, np.ndarray, dict[str, Any]]]


@dataclass
class Graph:
    keys: np.ndarray
    idx: np.ndarray
    sims: np.ndarray
    stats: dict[str, Any]
    meta: dict[str, Any] | None = None  # how it was made: {"exact": bool, "index": parameters and recall}


def graph_keys(prompt_ids: np.ndarray, text_hashes: list[str]) -> np.ndarray:
    """Row identity: prompt id and (80 bits of) its text hash, as compact bytes."""
    return np.array([f"{p}:{h[:20]}".encode() for p, h in zip(np.asarray(prompt_ids).tolist(), text_hashes)], dtype="S")


class GraphCache:
    """Exact self-kNN graphs of prompt sets, computed once and updated incrementally."""

    def __init__(self, cache_dir: Path, settings: NeighbourSettings | None = None, knn: KnnFunction = knn):
        self.cache_dir = Path(cache_dir)
        self.settings = settings or NeighbourSettings()
        # Computes whole exact graphs; an incremental update (few changed rows) stays in this process.
        self.knn = knn

    def path(self, info: "EncoderInfo", tag: str) -> Path:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in tag)
        return self.cache_dir / f"knn_{info.name}_{(info.fingerprint or 'nofp')[:12]}_{safe}.npz"

    @staticmethod
    def _load(path: Path) -> Graph | None:
        """The cached graph, or None (a miss: recomputed and rewritten) when the file cannot be read.

        The cache is derived data: a truncated file (BadZipFile), an empty one (EOFError, which
        click would otherwise report as Ctrl-C) or one of another shape costs a recomputation.
        """
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"])) if "meta" in z.files else {"exact": True}
                g = Graph(keys=z["keys"], idx=z["idx"], sims=z["sims"], stats={}, meta=meta)
            return g if g.keys.dtype.kind == "S" and g.idx.shape[0] == g.keys.shape[0] else None
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
            return None

    @staticmethod
    def _save(path: Path, g: Graph) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=g.keys, idx=g.idx, sims=g.sims, meta=np.array(json.dumps(g.meta or {"exact": True})))
        tmp.replace(path)

    def graph(
        self, info: "EncoderInfo", tag: str, prompt_ids: np.ndarray, text_hashes: list[str], k: int,
        vectors: Callable[[], np.ndarray], progress: Progress = None, within: Within | None = None,
    ) -> Graph:
        """The kNN graph of these prompts (ordered by id), from the cache when it still fits.

        `vectors()` returns their stored vectors (float32, normalised, same order); it is called
        only when rows changed. `within`: the larger index to search them in (an approximate graph)."""
        keys = graph_keys(prompt_ids, text_hashes)
        read: list[np.ndarray] = []

        def once() -> np.ndarray:  # the vectors read once, whichever path asks first
            if not read:
                read.append(vectors())
            return read[0]
        # Keep more neighbours than asked: a removed neighbour is then replaced from the row's own
        # list, so removals and label edits never need the vectors again.
        kg = max(int(k) + GRAPH_EXTRA, GRAPH_MIN_K)
        path = self.path(info, tag)
        old = self._load(path) if path.exists() else None
        approximate = self.settings.approximate(int(keys.size))
        if old is not None and not approximate and not (old.meta or {}).get("exact", True):
            old = None  # an approximate graph never stands in for an exact one
        t0 = time.perf_counter()
        if old is not None and old.idx.shape[1] >= k and old.keys.shape == keys.shape and (old.keys == keys).all():
            need = min(int(k), keys.size - 1)
            if keys.size == 0 or int((old.idx >= 0).sum(axis=1).min()) >= need:
                old.stats = {"source": "cache", "rows": int(keys.size), "recomputed": 0, "vectors_loaded": False,
                             "seconds": round(time.perf_counter() - t0, 4), **(old.meta or {"exact": True})}
                return old
        cb = (lambda d, t: progress(f"kNN {tag}", d, t)) if progress else None
        declined = None
        if approximate:
            if within is not None:
                g = self._approximate_within(within, keys, int(k), kg, once, old, cb)
            else:
                g = self._approximate(path, keys, np.asarray(prompt_ids, dtype=np.int64), int(k), kg, once, old, cb)
            if g.stats.get("exact") is False:
                g.stats["seconds"] = round(time.perf_counter() - t0, 4)
                self._save(path, g)
                return g
            declined = g.stats["approximate_declined"]
            old = old if old is not None and (old.meta or {}).get("exact", True) else None
        if old is not None and old.idx.shape[1] >= k and keys.size:
            idx, sims, st = update_knn(old.keys, old.idx, old.sims, keys, once, int(k), assume_normalised=True)
            st["source"] = "full" if st.get("full") else "incremental"
        elif keys.size:
            idx, sims = self.knn(once(), kg, progress=cb, assume_normalised=True)
            st = {"source": "full", "rows": int(keys.size), "recomputed": int(keys.size), "vectors_loaded": True}
        else:
            idx, sims = np.zeros((0, kg), np.int64), np.zeros((0, kg))
            st = {"source": "full", "rows": 0, "recomputed": 0, "vectors_loaded": False}
        st["seconds"] = round(time.perf_counter() - t0, 4)
        st["exact"] = True
        if declined is not None:
            st["approximate_declined"] = declined
        g = Graph(keys=keys, idx=idx, sims=sims, stats=st, meta={"exact": True})
        self._save(path, g)
        return g

    def _approximate(self, path: Path, keys: np.ndarray, ids: np.ndarray, k: int, kg: int,
                     vectors: Callable[[], np.ndarray], old: Graph | None, progress) -> Graph:
        """The graph from the faiss index beside it: the index updated in place (or built), the graph
        updated for the changed rows when few changed (they are searched exactly), else searched again."""
        x = vectors()
        ann, st = index_for(path.with_suffix(".faiss"), ids, keys, x)
        if not ann.worthwhile:  # it would scan as much as exact top-k: stay exact, and say why
            return _declined(ann)
        changed = st["index_added"] + st["index_removed"]
        if old is not None and old.idx.shape[1] >= k and st["index_source"] == "incremental" \
                and changed <= INCREMENTAL_SHARE * keys.size and keys.size > kg + 1:
            idx, sims, up = update_knn(old.keys, old.idx, old.sims, keys, x, k, max_changed_share=1.0,
                                       assume_normalised=True)
            st.update(source="incremental", recomputed=int(up["recomputed"]))
        else:
            idx, sims = self_knn(ann, x, kg, progress)
            st.update(source="full", recomputed=int(keys.size))
        meta = {"exact": False, "index": dict(ann.params)}
        st.update(rows=int(keys.size), vectors_loaded=True, **meta)
        return Graph(keys=keys, idx=idx, sims=sims, stats=st, meta=meta)

    def _approximate_within(self, within: Within, keys: np.ndarray, k: int, kg: int, vectors: Callable[[], np.ndarray],
                            old: Graph | None, progress) -> Graph:
        """The graph of a subset searched in the pool's index under a filter (the subset's rows only);
        its recall measured on a seeded sample of the subset against exact top-k among the subset."""
        ann, rows, xpool, index_stats = within()
        if not ann.worthwhile:
            return _declined(ann)
        st: dict[str, Any] = dict(index_stats)
        changed = int((~np.isin(keys, old.keys)).sum() + (~np.isin(old.keys, keys)).sum()) if old is not None else keys.size
        if old is not None and old.idx.shape[1] >= k and changed <= INCREMENTAL_SHARE * keys.size and keys.size > kg + 1:
            idx, sims, up = update_knn(old.keys, old.idx, old.sims, keys, vectors, k, max_changed_share=1.0,
                                       assume_normalised=True)
            st.update(source="incremental", recomputed=int(up["recomputed"]))
            recall = (old.meta or {}).get("index", {})
        else:
            sample, exact = _subset_sample(xpool, rows)
            ef, tuned = ann.tune_shared(xpool, rows, exact, sample) if len(sample) else (None, 1.0)
            before = dict(ann.walk_counts)
            idx, sims = self_knn_within(ann, xpool, rows, kg, progress, ef=ef)
            st.update(source="full", recomputed=int(keys.size),
                      rows_walked_again_under_the_filter=ann.walk_counts["walked_again"] - before["walked_again"])
            recall = _subset_recall(sims, (sample, exact))
            recall.update(efSearch_shared_walk=ef, recall_tuning=round(tuned, 4))
        meta = {"exact": False, "index": {**ann.params, **{key: recall[key] for key in recall if key.startswith(("recall", "efSearch"))},
                                          "shared": "the pool's index, searched under a filter to this set",
                                          "filter_share": round(len(rows) / max(len(xpool), 1), 4)}}
        st.update(rows=int(keys.size), vectors_loaded=True, **meta)
        return Graph(keys=keys, idx=idx, sims=sims, stats=st, meta=meta)


def _declined(ann: AnnIndex) -> Graph:
    """No graph: the tuned index would visit as much as an exact scan (the caller stays exact and says why)."""
    why = {"reason": f"efSearch {ann.params['efSearch']} for recall {ann.params.get('recall')}: "
                     f"past {ann_settings.MAX_EF}, a walk visits as much as an exact scan", **ann.params}
    return Graph(keys=np.zeros(0, "S1"), idx=np.zeros((0, 0), np.int64), sims=np.zeros((0, 0)),
                 stats={"exact": True, "approximate_declined": why})


def self_knn_within(ann: AnnIndex, xpool: np.ndarray, rows: np.ndarray, k: int,
                    progress: Callable[[int, int], None] | None = None, ef: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The approximate k nearest other members of each member (`rows` of the indexed pool, ascending),
    re-ranked exactly: (member row numbers, -1 padded; similarities). The members' unfiltered walks
    are kept by the index for the process, so another graph of the same rows walks no more."""
    n = len(rows)
    allowed = np.zeros(len(xpool), dtype=bool)
    allowed[rows] = True
    member_of = np.full(len(xpool), -1, dtype=np.int64)
    member_of[rows] = np.arange(n, dtype=np.int64)
    idx = np.full((n, k), -1, dtype=np.int64)
    sims = np.full((n, k), -np.inf)
    step = 32768
    for s in range(0, n, step):
        part = rows[s:s + step]
        ((found, sims[s:s + len(part)]),) = ann.search_masks(xpool[part], xpool, k, [allowed], exclude=part, self_rows=part, ef=ef)
        idx[s:s + len(part)] = np.where(found >= 0, member_of[np.maximum(found, 0)], -1)
        if progress:
            progress(s + len(part), n)
    return idx, sims


def _subset_sample(xpool: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A seeded sample of a subset (`rows` of the pool, ascending; sample positions in rows) and their
    exact top-RECALL_K similarities among the subset, the subset's vectors not copied."""
    from taxonomy_store.metrics.similarity import knn_query_rows
    from taxonomy_store.neighbours.approximate import RECALL_K, RECALL_SAMPLE, SEED

    n = len(rows)
    sample = np.sort(np.random.default_rng(SEED).choice(n, size=min(n, RECALL_SAMPLE), replace=False))
    k = min(RECALL_K, n - 1)
    _i, exact = knn_query_rows(xpool[rows[sample]], xpool, rows, k, exclude=rows[sample])
    return sample, exact


def _subset_recall(sims: np.ndarray, known: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Recall@RECALL_K of a subset's graph against exact top-k among the subset on the seeded sample
    (`known`: the sample and its exact similarities, `_subset_sample`)."""
    from taxonomy_store.neighbours.approximate import SEED, recall_at_k

    sample, exact = known
    k = min(exact.shape[1], sims.shape[1])
    return {"recall": recall_at_k(sims[sample, :k], exact[:, :k]), "recall_k": k, "recall_queries": int(len(sample)),
            "recall_seed": SEED}


def index_for(path: Path, ids: np.ndarray, keys: np.ndarray, x: np.ndarray) -> tuple[AnnIndex, dict[str, Any]]:
    """The faiss index of these rows kept at `path`: loaded and updated in place, or built (a missing,
    damaged or mismatched file, or one with too many tombstones, is rebuilt); recall measured (efSearch
    raised to reach the target) whenever rows changed, and the index saved."""
    ann = AnnIndex.load(path)
    st: dict[str, Any] = {"index_added": 0, "index_removed": 0}
    up: dict[str, int] = {}
    if ann is not None and ann.index.d != x.shape[1]:
        ann = None
    if ann is not None:
        up = ann.update(ids, keys, lambda: x)
        if ann.tombstones > ann_settings.REBUILD_SHARE * ann.index.ntotal:
            ann = None  # too many removed rows left in the graph: rebuilt below
    if ann is not None:
        st.update(index_source="incremental" if up["added"] or up["removed"] else "cache",
                  index_added=up["added"], index_removed=up["removed"])
        if st["index_source"] == "incremental" and ann.recall(x)["recall"] < RECALL_TARGET:
            ann.tune(x)
    else:
        ann = AnnIndex.build(ids, keys, x)
        ann.tune(x)
        st.update(index_source="built", index_added=int(keys.size))
    if st["index_source"] != "cache":
        ann.save(path)
    return ann, st
