"""Crosswalk proposals: where the prompts of each SOURCE category land among TARGET-labeled prompts.

Neighbours come from the one exact neighbour service (filters are masks, top-k exact, ties to
the lower prompt id), so a proposal is deterministic for a given store state. The maths is
`metrics.crosswalk`; this module gathers the arrays and names the categories.

The radius of "like something stored" is the guard's calibrated normalised similarity
(`tstore calibrate`); an uncalibrated encoder gets the same statistic computed here on the
TARGET-labeled prompts (the similarity 95 % of them reach to their nearest other one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from taxonomy_store.catalog import NodeInfo
from taxonomy_store.errors import InvalidValue, UnknownTaxonomy
from taxonomy_store.guard.calibration import OOD_COVERAGE, Calibration, encoder_baseline
from taxonomy_store.guard.scorers import normalised_similarity
from taxonomy_store.metrics.crosswalk import NO_COUNTERPART, read_proposal, tally
from taxonomy_store.neighbours.service import Filters, Pool
from taxonomy_store.vocabulary import choose_level

DEFAULT_K = 10
EXAMPLES = 3


@dataclass
class TargetShare:
    code: str
    name: str
    share: float
    mean_similarity: float | None


@dataclass
class Proposal:
    source: str  # source category code
    source_name: str
    prompts: int
    coverage: float
    nearest_similarity: float | None  # median normalised similarity of the prompts' nearest target-labeled prompt
    reading: str  # maps to | splits into | no counterpart
    targets: list[str]  # the target codes the reading names
    why: str
    shares: list[TargetShare]  # the top target categories, largest share first
    examples: list[dict[str, Any]] = field(default_factory=list)  # a few source prompts and their nearest target prompt
    status: dict[str, str] = field(default_factory=dict)  # target code -> stored row status (accepted / rejected / proposed)

    @property
    def label(self) -> str:
        if self.reading == NO_COUNTERPART:
            return NO_COUNTERPART
        return f"{self.reading} " + " and ".join(self.targets)


@dataclass
class CrosswalkReport:
    source: str
    target: str
    source_level: str | None
    target_level: str
    encoder: str
    k: int
    radius: float
    radius_from: str
    baseline: float
    proposals: list[Proposal]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for p, src in zip(d["proposals"], self.proposals):
            p["label"] = src.label
        return d


def level_depth(pool: Pool, taxonomy: str, level: str | None, *, role: str) -> tuple[int | None, str | None]:
    """(depth, level name) of a level of a taxonomy; depth None: each prompt's own category (an unnamed flat taxonomy)."""
    if taxonomy not in pool.taxonomies:
        known = ", ".join(sorted(pool.taxonomies)) or "none"
        raise UnknownTaxonomy(f"no {role} taxonomy {taxonomy!r} in this store", f"loaded: {known}")
    levels = pool.taxonomies[taxonomy]
    if level is None:
        if not levels:
            return None, None
        level = choose_level(levels)
    if level.isdigit():
        return int(level), levels[int(level)] if int(level) < len(levels) else level
    if level not in levels:
        raise InvalidValue(f"taxonomy {taxonomy!r} has no level {level!r}", f"levels: {', '.join(levels) or 'none named'}")
    return levels.index(level), level


def category_at(node: NodeInfo | None, depth: int | None) -> int | None:
    if node is None:
        return None
    return node.id if depth is None else node.at_depth(depth)


def radius_of(pool: Pool, target_mask: np.ndarray, nearest) -> tuple[float, str, float]:
    """(normalised radius, where it comes from, baseline b)."""
    cal = Calibration.from_dict(pool.info.calibration)
    if cal is not None and cal.ood_similarity is not None and cal.baseline is not None:
        return float(cal.ood_similarity), f"the calibration of {pool.encoder!r}", float(cal.baseline)
    b = encoder_baseline(pool)
    rows = np.flatnonzero(target_mask)
    if len(rows) < 2:
        return 0.0, "none (fewer than two target-labeled prompts)", b
    _idx, sims = nearest(pool, pool.vectors[rows], 1, mask=target_mask, exclude_rows=rows)
    near = normalised_similarity(sims[:, 0], b)
    return float(np.quantile(near, 1.0 - OOD_COVERAGE)), "the target prompts (encoder not calibrated)", b


def _members(pool: Pool, taxonomy: str, depth: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(pool rows categorised in `taxonomy` at `depth`, their category node id there)."""
    rows, cats = [], []
    for r, pid in enumerate(pool.prompt_ids):
        cid = pool.rows[int(pid)].category_id
        node = pool.nodes.get(cid) if cid is not None else None
        if node is None or node.taxonomy != taxonomy:
            continue
        at = category_at(node, depth)
        if at is not None:
            rows.append(r)
            cats.append(at)
    return np.asarray(rows, dtype=np.int64), np.asarray(cats, dtype=np.int64)


def propose(pool: Pool, nearest, source: str, target: str, *, source_level: str | None = None,
            target_level: str | None = None, k: int = DEFAULT_K) -> CrosswalkReport:
    """Proposals for every SOURCE category that has prompts with a vector. `nearest`: `Neighbours.nearest`."""
    if source == target:
        raise InvalidValue("SOURCE and TARGET are the same taxonomy", "name two different taxonomies")
    if k < 1:
        raise InvalidValue(f"k must be at least 1, got {k}")
    s_depth, s_level = level_depth(pool, source, source_level, role="source")
    t_depth, t_level = level_depth(pool, target, target_level, role="target")
    src_rows, src_cats = _members(pool, source, s_depth)
    tgt_rows, tgt_cats = _members(pool, target, t_depth)
    warnings = []
    if len(src_rows) == 0:
        warnings.append(f"no prompt with a vector of {pool.encoder!r} is categorised in {source!r}")
    if len(tgt_rows) == 0:
        warnings.append(f"no prompt with a vector of {pool.encoder!r} is categorised in {target!r}: every category reads no counterpart")
    target_mask = np.zeros(len(pool), dtype=bool)
    target_mask[tgt_rows] = True
    radius, radius_from, b = radius_of(pool, target_mask, nearest)
    groups_ids = sorted(set(src_cats.tolist()), key=lambda n: (pool.nodes[n].path, n))
    targets_ids = sorted(set(tgt_cats.tolist()), key=lambda n: (pool.nodes[n].path, n))
    group_of = {n: i for i, n in enumerate(groups_ids)}
    target_of_row = np.full(len(pool), -1, dtype=np.int64)
    t_index = {n: i for i, n in enumerate(targets_ids)}
    target_of_row[tgt_rows] = [t_index[c] for c in tgt_cats]
    if len(tgt_rows) and len(src_rows):
        idx, sims = nearest(pool, pool.vectors[src_rows], k, mask=target_mask, exclude_rows=src_rows)
    else:
        idx, sims = np.full((len(src_rows), k), -1), np.zeros((len(src_rows), k))
    t_of = np.where(idx >= 0, target_of_row[np.maximum(idx, 0)], -1)
    norm = normalised_similarity(np.where(idx >= 0, sims, 0.0), b)
    groups = np.asarray([group_of[c] for c in src_cats], dtype=np.int64)
    t = tally(groups, len(groups_ids), t_of, norm, len(targets_ids), radius)
    proposals = [
        _proposal(pool, g, groups_ids, targets_ids, t, src_rows[groups == g], idx[groups == g], norm[groups == g])
        for g in range(len(groups_ids))
    ]
    return CrosswalkReport(source, target, s_level, t_level or "", pool.encoder, k, radius, radius_from, b, proposals, warnings)


def _proposal(pool: Pool, g: int, groups_ids, targets_ids, t, rows: np.ndarray, idx: np.ndarray, norm: np.ndarray) -> Proposal:
    node = pool.nodes[groups_ids[g]]
    reading, chosen, why = read_proposal(t.share[g], float(t.coverage[g]))
    order = [j for j in np.argsort(-t.share[g], kind="stable")[:5] if t.share[g][j] > 0]
    shares = [
        TargetShare(pool.nodes[targets_ids[j]].code, pool.nodes[targets_ids[j]].name, float(t.share[g][j]),
                    None if np.isnan(t.mean_similarity[g][j]) else float(t.mean_similarity[g][j]))
        for j in order
    ]
    examples = []
    for r, ii, ss in list(zip(rows, idx, norm))[:EXAMPLES]:
        near = pool.rows[int(pool.prompt_ids[ii[0]])] if ii[0] >= 0 else None
        near_node = pool.nodes.get(near.category_id) if near is not None and near.category_id is not None else None
        examples.append(dict(
            prompt_id=int(pool.prompt_ids[r]), text=pool.rows[int(pool.prompt_ids[r])].text,
            nearest_text=near.text if near else None, nearest_category=near_node.code if near_node else None,
            nearest_similarity=float(ss[0]) if ii[0] >= 0 else None,
        ))
    return Proposal(
        source=node.code, source_name=node.name, prompts=int(t.count[g]), coverage=float(t.coverage[g]),
        nearest_similarity=None if np.isnan(t.nearest[g]) else float(t.nearest[g]), reading=reading,
        targets=[pool.nodes[targets_ids[j]].code for j in chosen], why=why, shares=shares, examples=examples,
    )
