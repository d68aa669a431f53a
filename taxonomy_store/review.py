"""`store.review`: read-only views the curators' TUI needs that no other part offers.

Suspects (prompts whose neighbours carry another label or category), the nearest stored
neighbours of a stored prompt, a pair's similarity under every encoder, and the latest metric
values arranged per category / pair type / encoder. Built only on the other parts' public
methods and the `catalog` read helpers; nothing here writes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .catalog import NodeInfo, PromptRow, live_prompts, node_index
from .errors import NotEmbedded, NotFound, TStoreError

if TYPE_CHECKING:
    from .store import Store

LABELED = ("safe", "unsafe")


@dataclass(frozen=True)
class ReviewPrompt:
    """A live prompt as the review views show it (the fields of curation's PromptView they use)."""

    id: int
    text: str
    label: str
    category_code: str | None
    category_path: tuple[str, ...]
    taxonomy: str | None
    dataset: str | None
    revision: int
    deleted: bool = False


@dataclass(frozen=True)
class ReviewNeighbour:
    prompt_id: int
    text: str
    label: str
    category: str | None
    similarity: float


@dataclass
class Suspect:
    prompt: ReviewPrompt
    purity: float  # share of the k nearest labelled/categorised prompts that agree with it
    suggested_label: str | None
    suggested_category: str | None
    by: str
    k: int
    neighbours: list[tuple[int, float]] = field(default_factory=list)


def _view(row: PromptRow, nodes: dict[int, NodeInfo]) -> ReviewPrompt:
    node = nodes.get(row.category_id) if row.category_id is not None else None
    return ReviewPrompt(
        id=row.id, text=row.text, label=row.label, category_code=node.code if node else None,
        category_path=node.path if node else (), taxonomy=node.taxonomy if node else None,
        dataset=row.dataset, revision=row.revision,
    )


def neighbour_purity(neighbour_groups: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Per row: the share of its neighbours (columns, -1 = no vote) whose group equals its own."""
    votes = neighbour_groups >= 0
    agree = (neighbour_groups == own[:, None]) & votes
    n = votes.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, agree.sum(axis=1) / np.maximum(n, 1), np.nan)


class Review:
    def __init__(self, store: "Store"):
        self.store = store

    # -- prompts and neighbours ------------------------------------------------------------
    def _rows(self, ids: list[int] | None = None) -> tuple[dict[int, PromptRow], dict[int, NodeInfo]]:
        with self.store.session() as s:
            rows = {r.id: r for r in live_prompts(s, ids)}
            nodes = node_index(s)
        return rows, nodes

    def neighbours(self, prompt_id: int, *, encoder: str, k: int = 5) -> list[ReviewNeighbour]:
        """The k stored prompts nearest to a stored prompt (itself left out), most similar first."""
        try:
            vs = self.store.index.load_vectors(encoder, prompt_ids=[prompt_id])
        except NotEmbedded:
            return []
        hits = self.store.index.nearest(encoder, vs.vectors, k + 1)[0]
        hits = [(pid, sim) for pid, sim in hits if pid != prompt_id][:k]
        rows, nodes = self._rows([pid for pid, _ in hits])
        out = []
        for pid, sim in hits:
            row = rows.get(pid)
            if row is None:
                continue
            node = nodes.get(row.category_id) if row.category_id is not None else None
            out.append(ReviewNeighbour(pid, row.text, row.label, node.code if node else None, float(sim)))
        return out

    def pair_similarities(self, unsafe_prompt_id: int, safe_prompt_id: int) -> dict[str, float | None]:
        """Cosine similarity of a pair's stored vectors under every registered encoder (None: not embedded)."""
        out: dict[str, float | None] = {}
        for enc in self.store.encoders.list():
            try:
                vs = self.store.index.load_vectors(enc.name, prompt_ids=[unsafe_prompt_id, safe_prompt_id])
                a, b = vs.take([unsafe_prompt_id]), vs.take([safe_prompt_id])
                out[enc.name] = float((a @ b.T)[0, 0])
            except (NotEmbedded, KeyError):
                out[enc.name] = None
        return out

    # -- suspects --------------------------------------------------------------------------
    def suspects(
        self,
        encoder: str,
        *,
        by: str = "label",
        taxonomy: str = "do-not-answer",
        level: str | None = None,
        k: int = 10,
        limit: int = 100,
        max_purity: float = 0.5,
    ) -> list[Suspect]:
        """Prompts whose k nearest neighbours mostly carry another label (`by="label"`) or another
        category at `level` of `taxonomy` (`by="category"`): lowest purity first, at most `limit`."""
        from .querying import exact_top_k

        if by not in ("label", "category"):
            raise NotFound(f"no suspects view by {by!r}", "use by='label' or by='category'")
        rows, nodes = self._rows()
        vs = self.store.index.load_vectors(encoder)
        keep = np.fromiter((int(i) in rows for i in vs.prompt_ids), dtype=bool, count=len(vs.prompt_ids))
        ids, vectors = vs.prompt_ids[keep], vs.vectors[keep]

        if by == "label":
            groups = np.array([LABELED.index(rows[int(i)].label) if rows[int(i)].label in LABELED else -1 for i in ids])
            names = list(LABELED)
        else:
            depth = self._depth(taxonomy, level)
            group_of: list[int] = []
            for i in ids:
                node = nodes.get(rows[int(i)].category_id) if rows[int(i)].category_id is not None else None
                group_of.append(node.at_depth(depth) if node is not None and node.taxonomy == taxonomy else None)
            uniq = sorted({g for g in group_of if g is not None})
            pos = {g: n for n, g in enumerate(uniq)}
            groups = np.array([pos[g] if g is not None else -1 for g in group_of])
            names = [nodes[g].code for g in uniq]
        member = groups >= 0
        if member.sum() < 2:
            return []
        ids, vectors, groups = ids[member], vectors[member], groups[member]
        idx, sims = exact_top_k(vectors, vectors, k, exclude=np.arange(len(ids)))
        ngroups = groups[idx]
        purity = neighbour_purity(ngroups, groups)
        order = np.lexsort((ids, purity))
        out: list[Suspect] = []
        for j in order:
            if len(out) >= limit or not purity[j] <= max_purity:
                break
            majority, _ = Counter(ngroups[j].tolist()).most_common(1)[0]
            row = rows[int(ids[j])]
            view = _view(row, nodes)
            if by == "label":
                s_label, s_cat = names[majority], None
            else:
                # the most common leaf category among the neighbours in the majority group
                leaves = Counter(
                    rows[int(ids[m])].category_id for m in idx[j] if groups[m] == majority
                ).most_common(1)[0][0]
                s_label, s_cat = None, nodes[leaves].code
            out.append(Suspect(view, float(purity[j]), s_label, s_cat, by, k,
                               [(int(ids[m]), float(s)) for m, s in zip(idx[j], sims[j])]))
        return out

    def _depth(self, taxonomy: str, level: str | None) -> int:
        levels = next((t["levels"] for t in self.store.taxonomies.list() if t["name"] == taxonomy), None)
        if levels is None:
            self.store.taxonomies.tree(taxonomy)  # raises UnknownTaxonomy with its hint
            levels = []
        if level is None:
            level = "harm_type" if "harm_type" in levels else (levels[-1] if levels else 0)
        if isinstance(level, int) or str(level).isdigit():
            return int(level)
        if level not in levels:
            raise NotFound(f"taxonomy {taxonomy!r} has no level {level!r}", f"levels: {', '.join(levels) or 'none'}")
        return levels.index(level)

    # -- metric tables -------------------------------------------------------------------
    def category_scores(self, encoder: str, *, taxonomy: str) -> dict[str, float]:
        return {}
