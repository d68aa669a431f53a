"""`store.overlap`: exact and near-duplicate prompts within and across datasets.

Exact: the same normalised text. The store keeps one prompt per normalised text, so an exact
group is a prompt with several dataset rows (`prompt_sources`). Near: distinct prompts whose
cosine similarity under an encoder is at least the threshold, joined into groups (union-find);
the pure, blocked maths is `metrics.overlap` (never an N x N matrix in memory).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
from sqlalchemy import select

from taxonomy_store.db.models import Dataset, Prompt, PromptSource
from taxonomy_store.errors import InvalidValue, NotFound
from taxonomy_store.metrics.overlap import near_pairs, union_groups

DEFAULT_THRESHOLD = 0.95


@dataclass
class OverlapGroup:
    kind: str  # exact | near
    prompt_ids: list[int]
    datasets: list[str]  # sorted, with repeats: one per dataset row
    texts: list[str]


@dataclass
class OverlapReport:
    encoder: str | None
    threshold: float
    datasets: list[str]
    pairs: list[dict[str, Any]]  # {a, b, exact, near}: groups joining a and b (a == b: within one dataset)
    groups: list[OverlapGroup] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pair_counts(groups: list[OverlapGroup], datasets: list[str]) -> list[dict[str, Any]]:
    """Per dataset pair (a <= b): how many exact and near groups join them (a == b: a repeat inside a)."""
    acc: Counter = Counter()
    for g in groups:
        c = Counter(g.datasets)
        for a in c:
            if c[a] > 1:
                acc[(a, a, g.kind)] += 1
        for a, b in combinations(sorted(c), 2):
            acc[(a, b, g.kind)] += 1
    out = []
    for a, b in [(a, a) for a in datasets] + list(combinations(datasets, 2)):
        out.append(dict(a=a, b=b, exact=acc[(a, b, "exact")], near=acc[(a, b, "near")]))
    return out


def near_groups(vectors: np.ndarray, threshold: float, progress=None) -> list[list[int]]:
    """Row groups (each sorted, two or more rows) of vectors joined at cosine >= threshold."""
    pairs = near_pairs(vectors, threshold, progress=progress)
    if len(pairs) == 0:
        return []
    roots = union_groups(len(vectors), pairs)
    members: dict[int, list[int]] = {}
    for r in np.unique(pairs):
        members.setdefault(int(roots[r]), []).append(int(r))
    return sorted((sorted(m) for m in members.values() if len(m) > 1), key=lambda m: m[0])


class Overlap:
    def __init__(self, db, encoders, neighbours):
        self._db = db
        self._encoders = encoders
        self._neighbours = neighbours

    def _sources(self, datasets: list[str]) -> dict[int, list[str]]:
        """Live prompt id -> the dataset of each of its rows (only the chosen datasets)."""
        q = (select(PromptSource.prompt_id, Dataset.name).join(Dataset, Dataset.id == PromptSource.dataset_id)
             .join(Prompt, Prompt.id == PromptSource.prompt_id).where(Prompt.deleted_at.is_(None)))
        with self._db.session() as s:
            known = set(s.scalars(select(Dataset.name)).all())
            for d in datasets:
                if d not in known:
                    raise NotFound(f"no dataset {d!r} in this store", f"datasets: {', '.join(sorted(known))}")
            if datasets:
                q = q.where(Dataset.name.in_(datasets))
            out: dict[int, list[str]] = {}
            for pid, name in s.execute(q.order_by(PromptSource.prompt_id, Dataset.name)).all():
                out.setdefault(int(pid), []).append(name)
        return out

    def report(self, *, datasets: list[str] | None = None, threshold: float = DEFAULT_THRESHOLD, encoder: str | None = None,
               near: bool = True, progress=None) -> OverlapReport:
        if not 0.0 < threshold <= 1.0:
            raise InvalidValue(f"threshold must lie in (0, 1], got {threshold}")
        datasets = sorted(set(datasets or []))
        sources = self._sources(datasets)
        names = datasets or sorted({d for ds in sources.values() for d in ds})
        groups = [OverlapGroup("exact", [pid], sorted(ds), []) for pid, ds in sources.items() if len(ds) > 1]
        enc = None
        if near:
            pool = self._neighbours.pool(encoder or self._encoders.default_name())
            enc = pool.encoder
            ids = np.asarray(sorted(p for p in sources if p in pool.rows), dtype=np.int64)
            present = ids[np.isin(ids, pool.prompt_ids)]
            vectors = pool.vectors[pool.row_of(present)] if len(present) else np.zeros((0, pool.vectors.shape[1]), np.float32)
            for rows in near_groups(vectors, threshold, progress):
                pids = [int(present[r]) for r in rows]
                groups.append(OverlapGroup("near", pids, sorted(d for p in pids for d in sources[p]), []))
        texts = self._texts({p for g in groups for p in g.prompt_ids})
        for g in groups:
            g.texts = [texts[p] for p in g.prompt_ids]
        return OverlapReport(enc, threshold, names, pair_counts(groups, names), groups)

    def _texts(self, ids: set[int]) -> dict[int, str]:
        out: dict[int, str] = {}
        with self._db.session() as s:
            ordered = sorted(ids)
            for i in range(0, len(ordered), 500):
                out.update(s.execute(select(Prompt.id, Prompt.text).where(Prompt.id.in_(ordered[i:i + 500]))).all())
        return out
