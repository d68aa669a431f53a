"""Query: the stored prompts nearest to new text, a category vote, and a calibrated unsafe verdict.

Every neighbour comes from the exact neighbour service (`neighbours.py`): the encoder's vectors
are read once per process and top-k is exact, filtered or not (filters are masks).

The unsafe score of a prompt is the metrics package's kNN detection score
(`metrics.detection.knn_scores`): the similarity-weighted share of unsafe prompts among its k
nearest labeled prompts (weights: cosine clipped at 0). `calibrate` computes it for every
labeled prompt leave-one-out (a prompt never votes for itself; the labeled prompts' cached kNN
graph, the detection metric's) and picks the threshold; the verdict of `query` always uses the
unfiltered labeled neighbourhood and the calibration's k, so it is the very score that was
calibrated, whatever k and filters the neighbour list uses.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from taxonomy_store.guard import calibration as calib
from taxonomy_store.guard.calibration import Calibration, Reference
from taxonomy_store.catalog import NodeInfo
from taxonomy_store.errors import EmptyPrompt, InvalidValue, NotEnoughLabels, UnknownTaxonomy
from taxonomy_store.neighbours.service import Filters, Neighbours, Pool
from taxonomy_store.guard.scorers import scorer_named
from taxonomy_store.guard.verdicts import NOTHING_LIKE_IT, decide, score_and_search
from taxonomy_store.guard.via_crosswalk import mapped_neighbours
from taxonomy_store.vocabulary import DEFAULT_TAXONOMY, JUDGED_LABELS, choose_level
from taxonomy_store.text import check_text_length

DEFAULT_K = 10
DEFAULT_MARGIN = calib.DEFAULT_MARGIN


# -- the category vote ----------------------------------------------------------------------
def category_votes(
    cat_ids: list[int | None], weights: np.ndarray, nodes: dict[int, NodeInfo], taxonomy: str, depth: int, level: str | None
) -> list["CategoryVote"]:
    """Similarity-weighted vote over the ancestors at `depth` of the neighbours' categories.

    A vote's score is its share of the whole neighbourhood's weight, so neighbours without a
    category at this level (safe prompts, other taxonomies) dilute it: the scores sum to <= 1.
    """
    total = float(np.sum(weights))
    acc: dict[int, tuple[float, int]] = {}
    for cid, w in zip(cat_ids, weights):
        node = nodes.get(cid) if cid is not None else None
        if node is None or node.taxonomy != taxonomy:
            continue
        anc = node.at_depth(depth)
        if anc is None:
            continue
        weight, count = acc.get(anc, (0.0, 0))
        acc[anc] = (weight + float(w), count + 1)
    out = []
    for nid, (w, n) in acc.items():
        info = nodes[nid]
        out.append(
            CategoryVote(
                code=info.code, name=info.name, short_name=info.short_name, level=level, path=list(info.path),
                score=w / total if total > 0 else 0.0, weight=w, count=n,
            )
        )
    out.sort(key=lambda v: (-v.weight, -v.count, v.code))
    return out


# -- results ----------------------------------------------------------------------------------
@dataclass
class Neighbour:
    prompt_id: int
    text: str
    label: str
    dataset: str | None
    category: str | None  # leaf code
    category_path: list[str]  # codes from the root down
    similarity: float


@dataclass
class CategoryVote:
    code: str
    name: str
    short_name: str | None
    level: str | None
    path: list[str]
    score: float  # share of the neighbourhood's similarity weight
    weight: float
    count: int


@dataclass
class QueryResult:
    index: int
    id: Any
    text: str
    encoder: str
    k: int
    taxonomy: str
    level: str
    filters: dict[str, Any]
    neighbours: list[Neighbour]
    categories: list[CategoryVote]
    rollup: dict[str, list[CategoryVote]]  # ancestor level -> votes
    unsafe_score: float | None
    verdict: str
    verdict_reason: str
    threshold: float | None
    margin: float | None
    warnings: list[str] = field(default_factory=list)
    scorer: str | None = None  # the calibrated scorer that decided (None: not calibrated)
    nearest_similarity: float | None = None  # normalised similarity of the nearest labeled prompt
    votes: dict[str, list[CategoryVote]] = field(default_factory=dict)  # harm taxonomy -> vote at its level
    via_crosswalk: list[str] = field(default_factory=list)  # how accepted crosswalks entered the vote (empty: they did not)
    # How the neighbours were found: {"exact": True}, or {"exact": False, "index": parameters and measured recall}.
    neighbour_search: dict[str, Any] = field(default_factory=lambda: {"exact": True})

    @property
    def top_category(self) -> CategoryVote | None:
        """The leading harm category; never for a safe verdict or a query unlike anything stored."""
        return self.categories[0] if self.categories else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Guard:
    """`store.guard`: query and calibrate, on the exact neighbour service."""

    def __init__(self, neighbours: Neighbours, encoders, embeddings):
        # encoders: the registry (default name, calibrations); embeddings: the live encoders.
        self.neighbours = neighbours
        self._encoders = encoders
        self._embeddings = embeddings
        self._default: str | None = None  # the default encoder's name, resolved once
        # Accepted crosswalk rows onto a taxonomy (source node id -> [(target node id, weight)]), set by store.py.
        self.crosswalk: Callable[[str], dict[int, list[tuple[int, float]]]] | None = None
        self._crosswalk_cache: tuple | None = None

    def _encode(self, pool: Pool, texts: list[str]) -> np.ndarray:
        # The live encoder checks the model's weights against the registry once per process
        # (EncoderMismatch when they changed since the vectors were made).
        return np.asarray(self._embeddings.live_encoder(pool.info).encode(texts), dtype=np.float32)

    def _encoder_name(self, encoder: str | None) -> str:
        if encoder:
            return encoder
        if self._default is None:
            self._default = self._encoders.default_name()
        return self._default

    @staticmethod
    def _calibration(pool: Pool) -> "Calibration | None":
        return Calibration.from_dict(pool.info.calibration)

    # -- query ----------------------------------------------------------------------------
    def query(
        self,
        texts: list[str],
        *,
        encoder: str | None = None,
        k: int = DEFAULT_K,
        level: str | None = None,
        taxonomy: str | None = None,
        dataset: str | list[str] | None = None,
        label: str | list[str] | None = None,
        category: str | list[str] | None = None,
        ids: list[Any] | None = None,
    ) -> list[QueryResult]:
        """The k nearest stored prompts of each text, a category vote, an unsafe score and verdict.

        `taxonomy` (default do-not-answer, when loaded) names whose categories vote, at `level`
        (default: `vocabulary.choose_level` of the taxonomy's levels);
        `dataset` / `label` / `category` (a node and everything under it) filter the neighbours,
        never the verdict's voters. `ids` (optional, one per text) are carried into the results.
        """
        if isinstance(texts, str):
            texts = [texts]
        if k < 1:
            raise InvalidValue(f"k must be at least 1, got {k}")
        if ids is not None and len(ids) != len(texts):
            raise InvalidValue("ids and texts differ in length")
        for i, t in enumerate(texts):
            if not isinstance(t, str) or not t.strip():
                where = f" (input {ids[i] if ids is not None else i + 1})" if len(texts) > 1 else ""
                raise EmptyPrompt(f"empty prompt{where}", "give some text to query")
            check_text_length(t, "the query" + (f" (input {ids[i] if ids is not None else i + 1})" if len(texts) > 1 else ""))
        filters = Filters.of(dataset=dataset, label=label, category=category)
        encoder = self._encoder_name(encoder)
        pool = self.neighbours.pool(encoder)
        if not texts:
            return []
        taxonomy, vote_levels, extra, level = _vote_taxonomy(pool, taxonomy, level)
        depth = vote_levels.index(level) if vote_levels else 0
        cal = self._calibration(pool)
        warnings, blocking = self._warnings(pool, cal)
        warnings += extra

        qv = self._encode(pool, list(texts))
        return [
            self._result(pool, i, text, ids[i] if ids is not None else None, cal, blocking, warnings, votes_of, filters, k,
                         taxonomy, level)
            for i, (text, votes_of) in enumerate(zip(texts, self._search(pool, qv, k, filters, cal, taxonomy, vote_levels, depth)))
        ]

    @staticmethod
    def _result(pool, i, text, ident, cal, blocking, warnings, found, filters, k, taxonomy, level) -> QueryResult:
        neighbours, votes, rollup, by_taxonomy, score, nearest, via = found
        verdict, reason = ("uncertain", blocking) if blocking else decide(score, cal, nearest)
        if verdict == "safe" or reason.startswith(NOTHING_LIKE_IT):
            # a safe verdict names no harm category, nor does a query unlike anything stored
            votes, rollup, by_taxonomy, via = [], {}, {}, []
        return QueryResult(
            index=i, id=ident, text=text, encoder=pool.encoder, k=k, taxonomy=taxonomy, level=level,
            filters=filters.as_dict(), neighbours=neighbours, categories=votes, rollup=rollup,
            unsafe_score=score, verdict=verdict, verdict_reason=reason,
            threshold=cal.threshold if cal else None, margin=cal.uncertain_within if cal else None, warnings=list(warnings),
            scorer=cal.scorer if cal else None, nearest_similarity=nearest, votes=by_taxonomy, via_crosswalk=via,
            neighbour_search=pool.search_info(),
        )

    def _search(self, pool: Pool, qv: np.ndarray, k: int, filters: Filters, cal, taxonomy, vote_levels, depth):
        """Per query: (neighbours, votes, rollup, votes per harm taxonomy, unsafe score, nearest normalised similarity)."""
        # one search of the pool: the neighbours the filters let through, and the voters of the score
        found, near_all, ((idx, sims),) = score_and_search(pool, None, qv, cal, k=k, also=(filters,))
        scores: np.ndarray | None = found
        nearest: np.ndarray | None = near_all
        if not pool.mask(Filters(label=JUDGED_LABELS)).any():
            scores = nearest = None  # no labeled prompt to vote
        elif cal is None:
            nearest = None  # without a calibration no similarity says "nothing like it"
        harm = _harm_taxonomies(pool)
        mapping = self._accepted_crosswalk(pool, taxonomy)
        for i in range(len(qv)):
            neighbours = [_neighbour(pool, int(pool.prompt_ids[j]), sim) for j, sim in zip(idx[i], sims[i]) if j >= 0]
            weights = np.clip(np.array([n.similarity for n in neighbours], dtype=np.float64), 0.0, None)
            cat_ids = [pool.rows[n.prompt_id].category_id for n in neighbours]
            v_ids, v_w, notes = mapped_neighbours(cat_ids, weights, pool.nodes, taxonomy, mapping)
            votes = category_votes(v_ids, v_w, pool.nodes, taxonomy, depth, vote_levels[depth]) if vote_levels else []
            rollup = {
                vote_levels[d]: category_votes(v_ids, v_w, pool.nodes, taxonomy, d, vote_levels[d]) for d in range(depth - 1, -1, -1)
            }
            by_taxonomy = {}
            for name, d in harm.items():
                v = category_votes(cat_ids, weights, pool.nodes, name, d, pool.taxonomies[name][d] if pool.taxonomies[name] else None)
                if v:
                    by_taxonomy[name] = v
            score = None if scores is None or math.isnan(scores[i]) else float(scores[i])
            yield neighbours, votes, rollup, by_taxonomy, score, None if nearest is None else float(nearest[i]), notes

    def _accepted_crosswalk(self, pool: Pool, taxonomy: str) -> dict:
        """Accepted crosswalk rows onto the voting taxonomy, read once per store state ({}: none, or no hook)."""
        if self.crosswalk is None:
            return {}
        key = (pool.token, taxonomy)
        if self._crosswalk_cache is None or self._crosswalk_cache[0] != key:
            self._crosswalk_cache = (key, self.crosswalk(taxonomy))
        return self._crosswalk_cache[1]

    @staticmethod
    def _warnings(pool: Pool, cal: "Calibration | None") -> tuple[list[str], str | None]:
        """Warnings for every result, and the reason the verdict cannot be trusted at all (or None)."""
        msgs, blocking = [], None
        if pool.missing:
            msgs.append(
                f"{pool.missing} live prompts have no current vector for encoder {pool.encoder!r}; "
                f"run `tstore embed --encoder {pool.encoder}`"
            )
        if cal is None:
            return msgs, None
        if cal.fingerprint and pool.info.fingerprint and cal.fingerprint != pool.info.fingerprint:
            blocking = (
                f"the calibration of encoder {pool.encoder!r} was computed with other weights; "
                f"run `tstore calibrate --encoder {pool.encoder}`"
            )
            msgs.append(blocking)
        elif pool.data_revision > cal.data_revision:
            msgs.append(
                f"the store's data changed since encoder {pool.encoder!r} was calibrated "
                f"(data revision {cal.data_revision} -> {pool.data_revision}); "
                f"run `tstore calibrate --encoder {pool.encoder}`"
            )
        return msgs, blocking

    # -- calibrate ------------------------------------------------------------------------
    def calibrate(
        self,
        encoder: str | None = None,
        *,
        target_fpr: float | None = None,
        max_f1: bool = False,
        k: int = DEFAULT_K,
        margin: float = DEFAULT_MARGIN,
        scorer: str | None = None,
    ) -> Calibration:
        """Choose the encoder's scorer and unsafe threshold on grouped cross-validation, and store it.

        The scorer with the best out-of-fold AUROC decides unless `scorer` names one; the
        threshold balances recall and false-positive rate (Youden's J) by default, or takes the
        best F1 (`max_f1`), or the highest recall within `target_fpr`. An encoder change:
        audited, and it does not make itself stale.
        """
        if k < 1:
            raise InvalidValue(f"k must be at least 1, got {k}")
        if target_fpr is not None and not 0.0 <= target_fpr <= 1.0:
            raise InvalidValue(f"target FPR must lie in [0, 1], got {target_fpr}")
        if not 0.0 <= margin < 1.0:
            raise InvalidValue(f"margin must lie in [0, 1), got {margin}")
        if scorer is not None:
            scorer_named(scorer)  # InvalidValue naming the scorers there are
        encoder = self._encoder_name(encoder)
        pool = self.neighbours.pool(encoder)
        ref = self.reference(pool)
        n_unsafe, n_safe = int(ref.is_unsafe.sum()), int((~ref.is_unsafe).sum())
        if n_safe < 2 or n_unsafe < 2:
            raise NotEnoughLabels(
                f"calibration needs safe and unsafe prompts embedded with {encoder!r}; found {n_safe} safe, {n_unsafe} unsafe",
                "import labeled prompts of both kinds (e.g. xstest_prompts.csv), then `tstore embed --encoder " + encoder + "`",
            )
        cal = calib.fit(
            ref, encoder=encoder, k=min(k, n_safe + n_unsafe - 1), margin=margin, target_fpr=target_fpr, scorer=scorer,
            data_revision=pool.data_revision, objective="max_f1" if max_f1 else "balanced",
        )
        cal.neighbour_search = pool.search_info()
        self._encoders.set_calibration(encoder, cal.to_dict())  # audited as an encoder update
        return cal

    @staticmethod
    def reference(pool: Pool, mask: np.ndarray | None = None) -> Reference:
        """The labeled prompts a calibration learns from (all of the pool's, or those in `mask`)."""
        return Reference.of(pool, np.ones(len(pool), dtype=bool) if mask is None else mask)

    def calibration(self, encoder: str | None = None) -> Calibration | None:
        """The encoder's stored calibration, or None."""
        return Calibration.from_dict(self._encoders.get(self._encoder_name(encoder)).calibration)


def _vote_taxonomy(pool: Pool, taxonomy: str | None, level: str | None) -> tuple[str, list[str], list[str], str]:
    """(the taxonomy whose categories vote, its level names or [] when it cannot vote, warnings, the level)."""
    name = taxonomy or DEFAULT_TAXONOMY
    if name in pool.taxonomies:
        levels = pool.taxonomies[name]
        level = level or choose_level(levels)
        if level not in levels:
            raise InvalidValue(f"taxonomy {name!r} has no level {level!r}", f"levels: {', '.join(levels) or 'none named'}")
        return name, levels, [], level
    if taxonomy is not None:
        known = ", ".join(sorted(pool.taxonomies))
        raise UnknownTaxonomy(
            f"no taxonomy {taxonomy!r} in this store",
            f"loaded: {known}" if known else f"load one with `tstore taxonomy load {taxonomy}`",
        )
    warning = f"taxonomy {DEFAULT_TAXONOMY!r} is not loaded: no category vote (`tstore taxonomy load {DEFAULT_TAXONOMY}`)"
    return name, [], [warning], level or choose_level([])


def _harm_taxonomies(pool: Pool) -> dict[str, int]:
    """Taxonomies whose categories are harms, with the depth they vote at. Pair-type taxonomies
    (XSTest's homonyms, contexts, ...) describe how a safe prompt resembles an unsafe one: no harm."""
    out = {}
    for name, levels in pool.taxonomies.items():
        if "pair_type" in levels:
            continue
        out[name] = levels.index(choose_level(levels)) if levels else 0
    return out


def _neighbour(pool: Pool, pid: int, sim: float) -> Neighbour:
    row = pool.rows[pid]
    node = pool.nodes.get(row.category_id) if row.category_id is not None else None
    return Neighbour(
        prompt_id=pid, text=row.text, label=row.label, dataset=row.dataset,
        category=node.code if node else None, category_path=list(node.path) if node else [], similarity=float(sim),
    )


