"""`store.pair_mining`: candidate safe/unsafe twins mined from the store itself, for the review queue.

A twin shares its partner's topic but not its intent: for each unsafe prompt, its nearest safe
prompts (and for each safe prompt, its nearest unsafe ones) under an encoder, between a floor
(the same topic) and a ceiling (above it the two say the same thing: a label suspect, not a pair).
Candidates are ranked by how much the curated set needs them: the harm category (of the unsafe
side, at the taxonomy's scoring level) and the pair type (a side's category in the pair-type
taxonomy) with the fewest pairs first, counting what was already picked; the closer twin breaks
ties. Existing pairs (any status, a rejected one too) are never proposed again, and each prompt
appears in at most one proposal of a run. Proposals are written as *proposed* pairs of the pair
set `mined`, one audit batch (one undo), each with its reason as the pair's note.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from sqlalchemy import insert, select

from taxonomy_store.backend.database import Database
from taxonomy_store.db.models import Pair, PairSet, utcnow
from taxonomy_store.errors import InvalidValue
from taxonomy_store.taxonomy.trees import depth_of_level
from taxonomy_store.vocabulary import DEFAULT_TAXONOMY, PAIR_TYPES_TAXONOMY, SAFE, UNSAFE, choose_level

if TYPE_CHECKING:
    from taxonomy_store.neighbours.service import Neighbours, Pool

MINED_SET = "mined"
NEAREST = 3  # candidates per prompt: when one partner is taken, the next one may still serve
MIN_SIMILARITY = 0.45  # below: no shared topic (minilm on the paper data: 4 of 29 such proposals acceptable, 20 of 21 above)
MAX_SIMILARITY = 0.97  # above: the same request twice, one of the labels is likely wrong (see Suspects)
Progress = Callable[[str, int, int], None] | None


@dataclass
class Proposal:
    unsafe_id: int
    safe_id: int
    similarity: float
    harm_category: str | None  # the unsafe side's category code at the scoring level
    pair_type: str | None
    reason: str
    unsafe_text: str = ""
    safe_text: str = ""
    pair_id: int | None = None  # once written
    batch: str | None = None  # the audit batch that wrote it (one for the whole run: one undo)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Candidate:
    unsafe_row: int
    safe_row: int
    similarity: float
    from_side: str  # whose nearest neighbour the other is


class PairMining:
    def __init__(self, db: Database, neighbours: "Neighbours", levels: Callable[[str], list[str]]):
        self.db = db
        self._nearest = neighbours
        self._levels = levels  # taxonomy name -> its level names

    def propose(self, *, encoder: str, taxonomy: str = DEFAULT_TAXONOMY, limit: int = 20, write: bool = True,
                progress: Progress = None) -> list[Proposal]:
        """Up to `limit` proposals, most needed first; written as proposed pairs unless write=False."""
        if limit < 1:
            raise InvalidValue(f"limit must be at least 1, not {limit}")
        say = progress or (lambda _stage, _done, _total: None)
        say("reading vectors", 0, 3)
        pool = self._nearest.pool(encoder)
        depth = depth_of_level(taxonomy, self._levels(taxonomy), choose_level(self._levels(taxonomy)))
        taken = self._existing()
        say("nearest twins", 1, 3)
        candidates = self._candidates(pool, taken)
        say("ranking by need", 2, 3)
        harm = {r: self._harm(pool, r, taxonomy, depth) for c in candidates for r in (c.unsafe_row,)}
        kinds = {r: self._pair_type(pool, r) for c in candidates for r in (c.unsafe_row, c.safe_row)}
        counts = self._pair_counts(pool, taxonomy, depth)
        picked = _rank(candidates, harm, kinds, counts, limit)
        out = [self._proposal(pool, c, harm, kinds, counts) for c in picked]
        if write and out:
            self._write(out)
        say("done", 3, 3)
        return out

    # -- reading ----------------------------------------------------------------------------
    def _existing(self) -> set[tuple[int, int]]:
        with self.db.session() as s:
            return {(int(u), int(v)) for u, v in s.execute(select(Pair.unsafe_prompt_id, Pair.safe_prompt_id))}

    def _candidates(self, pool: "Pool", taken: set[tuple[int, int]]) -> list[_Candidate]:
        from taxonomy_store.neighbours.service import Filters

        labels = pool.labels()
        out: list[_Candidate] = []
        for side, other in ((UNSAFE, SAFE), (SAFE, UNSAFE)):
            rows = np.flatnonzero(labels == side)
            if not len(rows) or not (labels == other).any():
                continue
            idx, sims = self._nearest.nearest(pool, pool.vectors[rows], NEAREST, Filters.of(label=other))
            for i, row in enumerate(rows):
                for j, sim in zip(idx[i], sims[i]):
                    if j < 0 or not MIN_SIMILARITY <= sim <= MAX_SIMILARITY:
                        continue
                    u, v = (int(row), int(j)) if side == UNSAFE else (int(j), int(row))
                    if (int(pool.prompt_ids[u]), int(pool.prompt_ids[v])) not in taken:
                        out.append(_Candidate(u, v, float(sim), side))
        return out

    def _harm(self, pool: "Pool", row: int, taxonomy: str, depth: int) -> str | None:
        cat = pool.rows[int(pool.prompt_ids[row])].category_id
        node = pool.nodes.get(cat) if cat is not None else None
        if node is None or node.taxonomy != taxonomy:
            return None
        at = node.at_depth(depth)
        return pool.nodes[at].code if at is not None else None

    def _pair_type(self, pool: "Pool", row: int) -> str | None:
        cat = pool.rows[int(pool.prompt_ids[row])].category_id
        node = pool.nodes.get(cat) if cat is not None else None
        return node.code if node is not None and node.taxonomy == PAIR_TYPES_TAXONOMY else None

    def _pair_counts(self, pool: "Pool", taxonomy: str, depth: int) -> dict[tuple[str, str | None], int]:
        """Pairs not rejected per ("harm", category) and ("type", pair type)."""
        counts: dict[tuple[str, str | None], int] = {}
        with self.db.session() as s:
            rows = s.execute(select(Pair.unsafe_prompt_id, Pair.pair_type).where(Pair.status != "rejected")).all()
        for unsafe_id, pair_type in rows:
            counts[("type", pair_type)] = counts.get(("type", pair_type), 0) + 1
            if int(unsafe_id) in pool.rows:
                pos = int(np.searchsorted(pool.prompt_ids, int(unsafe_id)))
                if pos < len(pool.prompt_ids) and int(pool.prompt_ids[pos]) == int(unsafe_id):
                    key = ("harm", self._harm(pool, pos, taxonomy, depth))
                    counts[key] = counts.get(key, 0) + 1
        return counts

    def _proposal(self, pool: "Pool", c: _Candidate, harm: dict, kinds: dict, counts: dict) -> Proposal:
        u, v = int(pool.prompt_ids[c.unsafe_row]), int(pool.prompt_ids[c.safe_row])
        cat = harm.get(c.unsafe_row)
        kind = kinds.get(c.safe_row) or kinds.get(c.unsafe_row)
        near = (f"nearest safe prompt to unsafe #{u}" if c.from_side == UNSAFE else f"nearest unsafe prompt to safe #{v}")
        need = [f"harm {cat}: {counts.get(('harm', cat), 0)} pairs" if cat else "no harm category"]
        need.append(f"type {kind}: {counts.get(('type', kind), 0)} pairs" if kind else "untyped")
        reason = f"mined: {near} (cos {c.similarity:.2f}); " + ", ".join(need)
        return Proposal(u, v, round(c.similarity, 4), cat, kind, reason, pool.rows[u].text, pool.rows[v].text)

    # -- writing ----------------------------------------------------------------------------
    def _write(self, proposals: list[Proposal]) -> None:
        """Every proposal as a proposed pair of the `mined` set, in one audit batch (one undo)."""
        with self.db.write(reason=f"curation: propose {len(proposals)} mined pairs") as (s, audit):
            ps = s.scalar(select(PairSet).where(PairSet.name == MINED_SET))
            if ps is None:
                ps = PairSet(name=MINED_SET, kind="challenging", description="safe/unsafe twins mined from the store")
                s.add(ps)
                s.flush()
                audit.record("insert", "pair_set", ps.id, None, {"name": MINED_SET, "kind": "challenging"})
            for p in proposals:
                values = dict(pair_set_id=ps.id, unsafe_prompt_id=p.unsafe_id, safe_prompt_id=p.safe_id, pair_type=p.pair_type,
                              source_key=f"{p.unsafe_id}|{p.safe_id}", status="proposed", note=p.reason)
                p.pair_id = s.execute(insert(Pair).returning(Pair.id), [dict(values, created_at=utcnow())]).scalar_one()
                audit.record("insert", "pair", p.pair_id, None, values)
            for p in proposals:
                p.batch = audit.batch_id


def _rank(candidates: list[_Candidate], harm: dict, kinds: dict, counts: dict, limit: int) -> list[_Candidate]:
    """Greedy: each step takes the closest candidate of the (harm category, pair type) group the
    set needs most (fewest pairs, counting those picked), each prompt used once."""
    groups: dict[tuple, list[_Candidate]] = {}
    for c in sorted(candidates, key=lambda c: -c.similarity):
        key = (harm.get(c.unsafe_row), kinds.get(c.safe_row) or kinds.get(c.unsafe_row))
        groups.setdefault(key, []).append(c)
    pos = dict.fromkeys(groups, 0)  # each group's first candidate whose prompts are both still free
    have = dict(counts)
    used: set[int] = set()
    picked: list[_Candidate] = []

    def head(key: tuple) -> _Candidate | None:
        lst, i = groups[key], pos[key]
        while i < len(lst) and (lst[i].unsafe_row in used or lst[i].safe_row in used):
            i += 1
        pos[key] = i
        return lst[i] if i < len(lst) else None

    while len(picked) < limit:
        heads = {k: h for k in groups if (h := head(k)) is not None}
        if not heads:
            break
        key = min(heads, key=lambda k: (have.get(("harm", k[0]), 0) + have.get(("type", k[1]), 0), -heads[k].similarity))
        c = heads[key]
        picked.append(c)
        used.update((c.unsafe_row, c.safe_row))
        have[("harm", key[0])] = have.get(("harm", key[0]), 0) + 1
        have[("type", key[1])] = have.get(("type", key[1]), 0) + 1
    return picked
