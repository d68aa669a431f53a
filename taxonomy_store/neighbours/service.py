"""The one exact neighbour service: nearest stored prompts per encoder, from the stored vectors.

Every part that names neighbours asks here: `query` (filtered or not) and its verdict, the
calibration, metric runs, suspects and the curators' neighbour panes. So they cannot disagree.

- The *pool* of an encoder is every live prompt with a vector of its current text (read once
  per process from the vector index, reloaded when the data, the encoder or its embeddings
  change), with the labels, categories and dataset memberships that filters test.
- Filters (label, dataset, category with everything under it, taxonomy, datasets left out)
  are boolean masks over the pool: a filtered search is exact, never an approximate index's guess.
- Top-k is the metrics package's blocked exact top-k (float64 decision, ties to the lower
  prompt id). Self-graphs of whole prompt sets come from the kNN graph cache (`knn_graphs`).
- Above `settings.approx_from` rows (unless `settings.exact`, the `--exact` flag) a search whose
  mask lets that many rows through asks the pool's faiss index instead (`approximate.py`),
  re-ranked exactly; `Pool.search_info()` says which, with the index parameters and recall.

Chroma stores the vectors; it decides nothing here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Iterable, NamedTuple, Sequence

import numpy as np
from sqlalchemy import func, select

from taxonomy_store.audit import data_revision
from taxonomy_store.catalog import NodeInfo, PromptRow, live_prompts, node_index
from taxonomy_store.db.models import AuditEntry, Dataset, Embedding, Encoder, Pair, Prompt, PromptSource, Taxonomy
from taxonomy_store.errors import EmptyStore, InvalidValue, NotEmbedded
from taxonomy_store.neighbours.approximate import AnnIndex, NeighbourSettings
from taxonomy_store.neighbours.graphs import Graph, GraphCache, Progress, graph_keys, index_for
from taxonomy_store.metrics.similarity import knn_query_parts, mask_parts
from taxonomy_store.vocabulary import LABELS

if TYPE_CHECKING:
    from taxonomy_store.embeddings.encoders import EncoderInfo



def _tuple(value: str | Iterable[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@dataclass(frozen=True)
class Filters:
    """Which stored prompts may be neighbours; an empty field does not filter."""

    label: tuple[str, ...] = ()
    dataset: tuple[str, ...] = ()
    category: tuple[str, ...] = ()  # a node code: the node and every node under it
    taxonomy: tuple[str, ...] = ()  # prompts categorised in these taxonomies
    without_dataset: tuple[str, ...] = ()  # prompts with a source in these datasets are left out
    without_ids: frozenset[int] = frozenset()

    @classmethod
    def of(cls, *, label=None, dataset=None, category=None, taxonomy=None, without_dataset=None, without_ids=None) -> "Filters":
        labels = _tuple(label)
        bad = [v for v in labels if v not in LABELS]
        if bad:
            raise InvalidValue(f"unknown label {bad[0]!r}", "labels: safe, unsafe, unlabeled")
        return cls(
            label=labels, dataset=_tuple(dataset), category=_tuple(category), taxonomy=_tuple(taxonomy),
            without_dataset=_tuple(without_dataset), without_ids=frozenset(int(i) for i in (without_ids or ())),
        )

    def __bool__(self) -> bool:
        return any((self.label, self.dataset, self.category, self.taxonomy, self.without_dataset, self.without_ids))

    def as_dict(self) -> dict[str, Any]:
        """The user-facing filters: one value, or a list for several (the query's JSON shape)."""
        out: dict[str, Any] = {}
        for key in ("dataset", "label", "category", "taxonomy"):
            values = getattr(self, key)
            if values:
                out[key] = values[0] if len(values) == 1 else list(values)
        return out


class PoolToken(NamedTuple):
    """What a pool was read at: it is read again when any of these moved."""

    audit_id: int  # the newest audit entry: data and registry changes
    encoder_id: int | None
    fingerprint: str | None
    vectors_revision: int  # bumped by every write of the encoder's vector bookkeeping


Part = tuple[tuple[bool, ...], np.ndarray, np.ndarray]  # (membership per mask, pool rows, their vectors)


@dataclass
class Pool:
    """An encoder's searchable prompts: rows ordered by prompt id, vectors float32 and normalised."""

    token: PoolToken
    info: "EncoderInfo"
    prompt_ids: np.ndarray
    vectors: np.ndarray
    rows: dict[int, PromptRow]
    nodes: dict[int, NodeInfo]
    taxonomies: dict[str, list[str]]  # name -> level names
    datasets: dict[int, frozenset[str]]  # prompt id -> every dataset it has a source in
    links: list[tuple[int, int]]  # (unsafe, safe) prompt ids of the pairs not rejected: kept together in grouped folds
    missing: int  # live prompts without a current vector
    data_revision: int
    _masks: dict[Filters, np.ndarray] = field(default_factory=dict, repr=False)
    _parts: dict[tuple[Filters, ...], list[Part]] = field(default_factory=dict, repr=False)
    _labels: np.ndarray | None = field(default=None, repr=False)
    settings: NeighbourSettings = field(default_factory=NeighbourSettings)
    index_path: Any = None  # where the pool's faiss index is kept (a Path), when it may need one
    _ann: AnnIndex | None = field(default=None, repr=False)
    ann_stats: dict[str, Any] = field(default_factory=dict, repr=False)  # how `ann()` had its index (`index_for`)
    _searched: dict[str, Any] = field(default_factory=lambda: {"exact": True}, repr=False)

    @property
    def encoder(self) -> str:
        return self.info.name

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def row_of(self, prompt_ids: Iterable[int]) -> np.ndarray:
        """Row numbers of these prompt ids (KeyError for one not in the pool)."""
        ids = np.asarray(list(prompt_ids), dtype=np.int64)
        pos = np.searchsorted(self.prompt_ids, ids)
        ok = (pos < len(self.prompt_ids)) & (self.prompt_ids[np.minimum(pos, max(len(self.prompt_ids) - 1, 0))] == ids)
        if len(ids) and not ok.all():
            raise KeyError(f"prompts without a current vector of {self.encoder!r}: {ids[~ok][:10].tolist()}")
        return pos

    def labels(self) -> np.ndarray:
        """Each row's label (read once per pool; do not write into it)."""
        if self._labels is None:
            self._labels = np.array([self.rows[int(i)].label for i in self.prompt_ids], dtype=object)
        return self._labels

    def mask(self, filters: Filters | None) -> np.ndarray:
        """The pool rows the filters let through (computed once per filter)."""
        filters = filters or Filters()
        if filters not in self._masks and not filters:
            self._masks[filters] = np.ones(len(self.prompt_ids), dtype=bool)
        elif filters not in self._masks and filters == Filters(label=filters.label):
            # by label only (the scorers' halves, the judged prompts): one vectorised test, no loop per prompt
            self._masks[filters] = np.isin(self.labels(), list(filters.label))
        elif filters not in self._masks:
            self._masks[filters] = np.fromiter(
                (self._passes(int(pid), filters) for pid in self.prompt_ids), dtype=bool, count=len(self.prompt_ids)
            )
        return self._masks[filters]

    def _passes(self, pid: int, f: Filters) -> bool:
        row = self.rows[pid]
        if f.label and row.label not in f.label:
            return False
        if f.without_ids and pid in f.without_ids:
            return False
        if f.dataset or f.without_dataset:
            member = self.datasets.get(pid, frozenset())
            if f.dataset and not member.intersection(f.dataset):
                return False
            if f.without_dataset and member.intersection(f.without_dataset):
                return False
        if f.category or f.taxonomy:
            node = self.nodes.get(row.category_id) if row.category_id is not None else None
            if node is None or (f.taxonomy and node.taxonomy not in f.taxonomy):
                return False
            if f.category and not set(node.path).intersection(f.category):
                return False
        return True

    def parts(self, filters: tuple[Filters, ...]) -> list[Part]:
        """The pool split by which of these filters let each row through (`metrics.similarity.mask_parts`),
        each part with its vectors as one contiguous matrix, kept for reuse."""
        if filters not in self._parts:
            self._parts[filters] = self.split([self.mask(f) for f in filters])
        return self._parts[filters]

    def approximate(self, rows: int) -> bool:
        """Whether a search over this many of the pool's rows asks the index (not when the tuned index
        would scan as much as an exact search: `AnnIndex.worthwhile`)."""
        return self.index_path is not None and self.settings.approximate(rows) and self.ann().worthwhile

    def ann(self) -> AnnIndex:
        """The pool's faiss index: loaded from the cache, updated or built on first use (`graphs.index_for`)."""
        if self._ann is None:
            keys = graph_keys(self.prompt_ids, [self.rows[int(i)].text_sha256 for i in self.prompt_ids])
            self._ann, self.ann_stats = index_for(self.index_path, self.prompt_ids, keys, self.vectors)
        return self._ann

    def search_info(self) -> dict[str, Any]:
        """How the last search of this pool found its neighbours: {"exact": True}, or the index's
        parameters and measured recall beside "exact": False."""
        return dict(self._searched)

    def split(self, masks: list[np.ndarray]) -> list[Part]:
        """The pool split by which of these masks (a boolean per row) hold each row."""
        return [(key, rows, self.vectors if len(rows) == len(self) else np.ascontiguousarray(self.vectors[rows]))
                for key, rows in mask_parts(masks)]


class Neighbours:
    """Exact nearest stored prompts of new vectors and of stored prompts, per encoder."""

    def __init__(self, db, encoders, embeddings, graphs: GraphCache):
        # db: sessions and a raw connection; encoders: the registry; embeddings: reads stored vectors.
        self._db = db
        self._encoders = encoders
        self._embeddings = embeddings
        self.graphs = graphs
        self.settings = graphs.settings  # one setting for searches and graphs: `--exact`, TSTORE_APPROX_FROM
        self._pools: dict[str, Pool] = {}
        self._local = threading.local()

    # -- the pool ------------------------------------------------------------------------
    @staticmethod
    @lru_cache(maxsize=64)
    def _token_statement(encoder: str):
        enc_id = select(Encoder.id).where(Encoder.name == encoder).scalar_subquery()
        return select(
            select(func.coalesce(func.max(AuditEntry.id), 0)).scalar_subquery(),
            enc_id,
            select(Encoder.fingerprint).where(Encoder.name == encoder).scalar_subquery(),
            select(Encoder.vectors_revision).where(Encoder.name == encoder).scalar_subquery(),
        )

    @classmethod
    def _token(cls, session, encoder: str) -> PoolToken:
        """Changes whenever the data, the encoder row or its embeddings change: one round trip."""
        row = session.execute(cls._token_statement(encoder)).one()
        return PoolToken(int(row[0] or 0), row[1], row[2], int(row[3] or 0))

    def _current_token(self, encoder: str) -> PoolToken:
        """The token, read on a connection this thread keeps: opening one per query costs more than the read."""
        conn = getattr(self._local, "conn", None)
        try:
            if conn is None or conn.closed:
                conn = self._local.conn = self._db.connect()
            try:
                return self._token(conn, encoder)
            finally:
                conn.rollback()  # end the read transaction: never pin an old snapshot of the database
        except Exception:
            self._local.conn = None
            with self._db.session() as s:
                return self._token(s, encoder)

    def pool(self, encoder: str) -> Pool:
        """The encoder's searchable prompts, reloaded only when the store has changed."""
        token = self._current_token(encoder)
        cached = self._pools.get(encoder)
        if cached is not None and cached.token == token:
            return cached
        with self._db.session() as s:
            token = self._token(s, encoder)
            info = self._encoders.get(encoder)  # UnknownEncoder with its hint
            rows = {r.id: r for r in live_prompts(s)}
            if not rows:
                raise EmptyStore("the store holds no prompts", "import some first, e.g. `tstore import do_not_answer.csv`")
            if s.scalar(select(Embedding.prompt_id).where(Embedding.encoder_id == info.id).limit(1)) is None:
                raise NotEmbedded(f"encoder {encoder!r} has no vectors yet", f"run `tstore embed --encoder {encoder}`")
            nodes = node_index(s)
            taxonomies = {n: list(lv or []) for n, lv in s.execute(select(Taxonomy.name, Taxonomy.levels)).all()}
            datasets = _memberships(s, rows)
            links = [(int(a), int(b)) for a, b in s.execute(select(Pair.unsafe_prompt_id, Pair.safe_prompt_id).where(Pair.status != "rejected"))]
            revision = data_revision(s)
        # the rows just read name the current texts: the vectors are read without a second SQL read
        vs = self._embeddings.vectors_of(info, {pid: r.text_sha256 for pid, r in rows.items()}, every=True)
        ids = np.asarray(vs.prompt_ids, dtype=np.int64)
        keep = np.fromiter((int(i) in rows for i in ids), dtype=bool, count=len(ids))
        ids, vectors = ids[keep], np.ascontiguousarray(vs.vectors[keep], dtype=np.float32)
        if len(ids) == 0:
            raise NotEmbedded(
                f"encoder {encoder!r} has no vectors of the store's current prompts", f"run `tstore embed --encoder {encoder}`"
            )
        pool = Pool(
            token=token, info=info, prompt_ids=ids, vectors=vectors, rows=rows, nodes=nodes, taxonomies=taxonomies,
            datasets=datasets, links=links, missing=int(vs.missing), data_revision=revision, settings=self.settings,
            index_path=self.graphs.path(info, "pool").with_suffix(".faiss"),
        )
        self._pools[encoder] = pool
        return pool

    # -- searches ------------------------------------------------------------------------
    @classmethod
    def search(cls, pool: Pool, vectors: np.ndarray, k: int, masks: Sequence[Filters | np.ndarray],
               *, exclude_rows: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """The k nearest pool rows of each vector under each mask, every similarity computed once:
        per mask (pool row numbers (n, k), -1 padded; similarities).

        A mask is a Filters (its split of the pool is kept for the next search) or a boolean per
        pool row, chosen by the caller (cross-validation folds, held-out prompts).
        exclude_rows[i] (a pool row, or -1) is never vector i's neighbour: a stored prompt is not its own."""
        q = np.ascontiguousarray(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
        if q.shape[1] != pool.vectors.shape[1]:
            raise InvalidValue(f"query vectors have {q.shape[1]} dimensions, encoder {pool.encoder!r} has {pool.vectors.shape[1]}")
        pool._searched = {"exact": True}
        if pool.approximate(len(pool)):
            return cls._search_approximate(pool, q, k, masks, exclude_rows)
        if all(isinstance(m, Filters) for m in masks):
            parts = pool.parts(tuple(masks))  # type: ignore[arg-type]  # all Filters, checked above
        else:
            parts = pool.split([pool.mask(m) if isinstance(m, Filters) else np.asarray(m, dtype=bool) for m in masks])
        ex = None if exclude_rows is None else np.asarray(exclude_rows, dtype=np.int64)
        return knn_query_parts(q, parts, len(masks), k, exclude=ex)

    @classmethod
    def _search_approximate(cls, pool: Pool, q: np.ndarray, k: int, masks: Sequence[Filters | np.ndarray],
                            exclude_rows: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """`search` on a large pool: a mask letting at least `approx_from` rows through asks the index
        (its rows as a faiss selector), a smaller one is searched exactly."""
        arrays = [pool.mask(m) if isinstance(m, Filters) else np.asarray(m, dtype=bool) for m in masks]
        big = [pool.approximate(int(a.sum())) for a in arrays]
        ex = None if exclude_rows is None else np.asarray(exclude_rows, dtype=np.int64)
        out: list[tuple[np.ndarray, np.ndarray]] = []
        small = [m for m, b in zip(masks, big) if not b]
        if small and all(isinstance(m, Filters) for m in small):
            parts = pool.parts(tuple(small))  # type: ignore[arg-type]  # kept: a query does not copy the rows again
        else:
            parts = pool.split([a for a, b in zip(arrays, big) if not b])
        exact = iter(knn_query_parts(q, parts, len(small), k, exclude=ex) if small else [])
        found = iter(pool.ann().search_masks(q, pool.vectors, k, [None if a.all() else a for a, b in zip(arrays, big) if b],
                                             exclude=ex) if any(big) else [])
        for b in big:
            out.append(next(found) if b else next(exact))
        if any(big):
            pool._searched = {"exact": False, "index": dict(pool.ann().params)}
        return out

    @classmethod
    def nearest(cls, pool: Pool, vectors: np.ndarray, k: int, filters: Filters | None = None,
                *, exclude_rows: np.ndarray | None = None, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest filtered pool rows of each vector (`search` under one mask; `mask`, a boolean
        per pool row, stands in for filters)."""
        ((idx, sims),) = cls.search(pool, vectors, k, [mask if mask is not None else (filters or Filters())], exclude_rows=exclude_rows)
        return idx, sims

    def of_stored(self, encoder: str, prompt_ids: list[int], k: int, filters: Filters | None = None) -> list[list[tuple[int, float]]]:
        """For each stored prompt, its k nearest other stored prompts (itself left out); [] for one without a vector."""
        pool = self.pool(encoder)
        present = [int(p) for p in prompt_ids if int(p) in pool.rows and _has(pool, int(p))]
        out: dict[int, list[tuple[int, float]]] = {p: [] for p in prompt_ids}
        if present:
            rows = pool.row_of(present)
            idx, sims = self.nearest(pool, pool.vectors[rows], k, filters, exclude_rows=rows)
            out.update(zip(present, _pairs(pool, idx, sims)))
        return [out[p] for p in prompt_ids]

    # -- graphs of whole sets ------------------------------------------------------------
    def graph(self, info: "EncoderInfo", tag: str, prompt_ids: np.ndarray, text_hashes: list[str], k: int,
              vectors: Callable[[], np.ndarray], progress: Progress = None) -> Graph:
        """The self-kNN graph of a prompt set (rows = prompt_ids ascending), cached under `tag`. A set
        large enough for the approximate path is searched in its pool's index (one index per pool)."""
        within = None
        if self.settings.approximate(len(prompt_ids)):
            try:
                pool: Pool | None = self.pool(info.name)
            except (EmptyStore, NotEmbedded):
                pool = None
            if pool is not None and pool.info.fingerprint == info.fingerprint:
                within = _within(pool, np.asarray(prompt_ids, dtype=np.int64), text_hashes)
        return self.graphs.graph(info, tag, prompt_ids, text_hashes, k, vectors, progress, within=within)

    def pool_graph(self, pool: Pool, tag: str, members: np.ndarray, k: int, progress: Progress = None) -> tuple[np.ndarray, Graph]:
        """The self-kNN graph of the pool rows in `members` (a boolean mask): (their prompt ids, graph)."""
        ids = pool.prompt_ids[members]
        hashes = [pool.rows[int(i)].text_sha256 for i in ids]
        within = (lambda: (pool.ann(), np.flatnonzero(members), pool.vectors, pool.ann_stats)) if pool.index_path is not None else None
        g = self.graphs.graph(pool.info, tag, ids, hashes, k, lambda: np.ascontiguousarray(pool.vectors[members]), progress,
                              within=within)
        return ids, g


def _within(pool: Pool, prompt_ids: np.ndarray, text_hashes: list[str]):
    """The pool's index for a set of its prompts, when every one is in the pool with the same text; else None."""
    if pool.index_path is None:
        return None
    try:
        rows = pool.row_of(prompt_ids.tolist())
    except KeyError:
        return None
    if any(pool.rows[int(i)].text_sha256 != h for i, h in zip(prompt_ids.tolist(), text_hashes)):
        return None
    return lambda: (pool.ann(), rows, pool.vectors, pool.ann_stats)


def _has(pool: Pool, pid: int) -> bool:
    pos = int(np.searchsorted(pool.prompt_ids, pid))
    return pos < len(pool.prompt_ids) and int(pool.prompt_ids[pos]) == pid


def _pairs(pool: Pool, idx: np.ndarray, sims: np.ndarray) -> list[list[tuple[int, float]]]:
    return [[(int(pool.prompt_ids[j]), float(s)) for j, s in zip(ii, ss) if j >= 0] for ii, ss in zip(idx, sims)]


def _memberships(session, rows: dict[int, PromptRow]) -> dict[int, frozenset[str]]:
    """Every dataset each live prompt has a source in (the same text in two datasets is one prompt)."""
    acc: dict[int, set[str]] = {pid: ({r.dataset} if r.dataset else set()) for pid, r in rows.items()}
    q = (
        select(PromptSource.prompt_id, Dataset.name)
        .join(Dataset, Dataset.id == PromptSource.dataset_id)
        .join(Prompt, Prompt.id == PromptSource.prompt_id)
        .where(Prompt.deleted_at.is_(None))
    )
    for pid, name in session.execute(q).all():
        if pid in acc:
            acc[pid].add(name)
    return {pid: frozenset(v) for pid, v in acc.items()}
