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
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .catalog import NodeInfo
from .errors import EmptyPrompt, InvalidValue, NotEnoughLabels, UnknownTaxonomy
from .metrics.detection import auroc, best_f1, knn_scores
from .neighbours import Filters, Neighbours, Pool
from .vocabulary import DEFAULT_TAXONOMY, JUDGED_LABELS, choose_level

DEFAULT_K = 10
DEFAULT_MARGIN = 0.05
SCORE_NAME = "similarity_weighted_unsafe_share"
DETECT_GRAPH = "detect"  # the labeled prompts' graph: calibration and the detection metric share it


# -- the maths: the metrics package's kNN, scores, AUROC and best F1; here only what it lacks ----
def threshold_at_fpr(scores: np.ndarray, y: np.ndarray, target_fpr: float) -> dict[str, float]:
    """The lowest threshold (highest recall) whose FPR stays within target_fpr; unsafe when score >= threshold."""
    scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y, dtype=bool)
    P, N = int(y.sum()), int((~y).sum())
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]  # last position of each distinct score
    tp, fp = np.cumsum(t)[last], np.cumsum(~t)[last]
    fpr = fp / N if N else np.zeros(len(last))
    ok = np.flatnonzero(fpr <= target_fpr + 1e-12)
    if len(ok):
        i = int(ok[-1])
        threshold, tp_i, fp_i = float(s[last[i]]), int(tp[i]), int(fp[i])
    else:  # even the highest score lets too many safe prompts through: flag nothing
        threshold, tp_i, fp_i = float(np.nextafter(s[0], np.inf)), 0, 0
    precision = tp_i / (tp_i + fp_i) if tp_i + fp_i else 0.0
    recall = tp_i / P if P else 0.0
    return {
        "threshold": threshold, "precision": precision, "recall": recall, "fpr": fp_i / N if N else 0.0,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "tp": tp_i, "fp": fp_i, "fn": P - tp_i, "tn": N - fp_i,
    }


def decide(score: float | None, calibration: "Calibration | None") -> tuple[str, str]:
    """unsafe / safe / uncertain, and why."""
    if score is None or math.isnan(score):
        return "uncertain", "no labeled neighbours voted"
    if calibration is None:
        return "uncertain", "no calibration for this encoder yet; run `tstore calibrate`"
    t, m = calibration.threshold, calibration.margin
    if abs(score - t) < m:
        return "uncertain", f"score {score:.3f} is within {m:g} of the threshold {t:.3f}"
    if score >= t:
        return "unsafe", f"score {score:.3f} >= threshold {t:.3f}"
    return "safe", f"score {score:.3f} < threshold {t:.3f}"


def category_votes(
    cat_ids: list[int | None], weights: np.ndarray, nodes: dict[int, NodeInfo], taxonomy: str, depth: int, level: str | None
) -> list["CategoryVote"]:
    """Similarity-weighted vote over the ancestors at `depth` of the neighbours' categories.

    A vote's score is its share of the whole neighbourhood's weight, so neighbours without a
    category at this level (safe prompts, other taxonomies) dilute it: the scores sum to <= 1.
    """
    total = float(np.sum(weights))
    acc: dict[int, list[float]] = {}
    for cid, w in zip(cat_ids, weights):
        node = nodes.get(cid) if cid is not None else None
        if node is None or node.taxonomy != taxonomy:
            continue
        anc = node.at_depth(depth)
        if anc is None:
            continue
        slot = acc.setdefault(anc, [0.0, 0])
        slot[0] += float(w)
        slot[1] += 1
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

    @property
    def top_category(self) -> CategoryVote | None:
        return self.categories[0] if self.categories else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Calibration:
    encoder: str
    threshold: float
    margin: float
    k: int
    objective: str  # "max_f1" | "target_fpr"
    target_fpr: float | None
    precision: float
    recall: float
    fpr: float
    f1: float
    auroc: float
    n_safe: int
    n_unsafe: int
    n_reference: int  # prompts that could be neighbours (labeled or not)
    data_revision: int
    fingerprint: str | None
    computed_at: str
    score: str = SCORE_NAME
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Calibration | None":
        if not d or "threshold" not in d:
            return None
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


class Querying:
    """`store.search`: query and calibrate, on the exact neighbour service."""

    def __init__(self, neighbours: Neighbours, encoders, index):
        # encoders: the registry (default name, calibrations); index: the live encoders.
        self.neighbours = neighbours
        self._encoders = encoders
        self._index = index
        self._default: str | None = None  # the default encoder's name, resolved once

    def _encode(self, pool: Pool, texts: list[str]) -> np.ndarray:
        # The live encoder checks the model's weights against the registry once per process
        # (EncoderMismatch when they changed since the vectors were made).
        return np.asarray(self._index.live_encoder(pool.info).encode(texts), dtype=np.float32)

    def _encoder_name(self, encoder: str | None) -> str:
        if encoder:
            return encoder
        if self._default is None or os.environ.get("TSTORE_ENCODER"):
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
        scores, hits = self._search(pool, qv, k, filters, cal.k if cal is not None else k)
        results = []
        for i, text in enumerate(texts):
            neighbours = [_neighbour(pool, int(pool.prompt_ids[j]), sim) for j, sim in zip(*hits[i]) if j >= 0]
            weights = np.clip(np.array([n.similarity for n in neighbours], dtype=np.float64), 0.0, None)
            cat_ids = [pool.rows[n.prompt_id].category_id for n in neighbours]
            votes = category_votes(cat_ids, weights, pool.nodes, taxonomy, depth, level) if vote_levels else []
            rollup = {
                vote_levels[d]: category_votes(cat_ids, weights, pool.nodes, taxonomy, d, vote_levels[d]) for d in range(depth - 1, -1, -1)
            }
            score = None if scores is None or math.isnan(scores[i]) else float(scores[i])
            verdict, reason = ("uncertain", blocking) if blocking else decide(score, cal)
            results.append(
                QueryResult(
                    index=i, id=ids[i] if ids is not None else None, text=text, encoder=encoder, k=k, taxonomy=taxonomy,
                    level=level, filters=filters.as_dict(), neighbours=neighbours, categories=votes, rollup=rollup,
                    unsafe_score=score, verdict=verdict, verdict_reason=reason,
                    threshold=cal.threshold if cal else None, margin=cal.margin if cal else None, warnings=list(warnings),
                )
            )
        return results

    def _search(self, pool: Pool, qv: np.ndarray, k: int, filters: Filters, verdict_k: int):
        """Unsafe scores (the calibrated definition: unfiltered labeled voters) and the filtered neighbour rows."""
        voters = Filters(label=JUDGED_LABELS)
        is_unsafe = pool.labels() == "unsafe"
        vote_mask, shown_mask = pool.mask(voters), pool.mask(filters)
        if not vote_mask.any():
            idx, sims = self.neighbours.nearest(pool, qv, k, filters)
            return None, list(zip(idx, sims))
        if np.array_equal(vote_mask, shown_mask):  # one exact top-k serves the list and the verdict
            idx, sims = self.neighbours.nearest(pool, qv, max(k, verdict_k), voters)
            return knn_scores(idx, sims, is_unsafe, verdict_k), list(zip(idx[:, :k], sims[:, :k]))
        vidx, vsims = self.neighbours.nearest(pool, qv, verdict_k, voters)
        idx, sims = self.neighbours.nearest(pool, qv, k, filters)
        return knn_scores(vidx, vsims, is_unsafe, verdict_k), list(zip(idx, sims))

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
    def loo_scores(self, encoder: str | None = None, *, k: int = DEFAULT_K) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Leave-one-out unsafe scores of the labeled prompts: (prompt ids, scores, is_unsafe).

        The neighbours are the labeled prompts' cached kNN graph, the one the detection metric reads."""
        pool = self.neighbours.pool(self._encoder_name(encoder))
        members = pool.mask(Filters(label=JUDGED_LABELS))
        is_unsafe = pool.labels()[members] == "unsafe"
        if members.sum() < 2:
            return pool.prompt_ids[members], np.zeros(int(members.sum())), is_unsafe
        ids, g = self.neighbours.pool_graph(pool, DETECT_GRAPH, members, k)
        return ids, knn_scores(g.idx, g.sims, is_unsafe, k), is_unsafe

    def calibrate(
        self,
        encoder: str | None = None,
        *,
        target_fpr: float | None = None,
        max_f1: bool = True,
        k: int = DEFAULT_K,
        margin: float = DEFAULT_MARGIN,
    ) -> Calibration:
        """Choose the encoder's unsafe threshold from the store's labeled prompts, leave-one-out, and store it.

        Best F1 by default; with target_fpr, the highest recall whose false-positive rate stays
        within it. An encoder change: audited, and it does not make itself stale.
        """
        if k < 1:
            raise InvalidValue(f"k must be at least 1, got {k}")
        if target_fpr is not None and not 0.0 <= target_fpr <= 1.0:
            raise InvalidValue(f"target FPR must lie in [0, 1], got {target_fpr}")
        if target_fpr is None and not max_f1:
            raise InvalidValue("choose an objective: max_f1=True or a target_fpr")
        if not 0.0 <= margin < 1.0:
            raise InvalidValue(f"margin must lie in [0, 1), got {margin}")
        encoder = self._encoder_name(encoder)
        pool = self.neighbours.pool(encoder)
        labels = pool.labels()
        n_unsafe, n_safe = int((labels == "unsafe").sum()), int((labels == "safe").sum())
        if n_safe == 0 or n_unsafe == 0 or n_safe + n_unsafe < 3:
            raise NotEnoughLabels(
                f"calibration needs safe and unsafe prompts embedded with {encoder!r}; found {n_safe} safe, {n_unsafe} unsafe",
                "import labeled prompts of both kinds (e.g. xstest_prompts.csv), then `tstore embed --encoder " + encoder + "`",
            )
        k = min(k, n_safe + n_unsafe - 1)
        _, scores, y = self.loo_scores(encoder, k=k)
        chosen = threshold_at_fpr(scores, y, target_fpr) if target_fpr is not None else best_f1(scores, y)
        cal = Calibration(
            encoder=encoder, threshold=chosen["threshold"], margin=float(margin), k=int(k),
            objective="target_fpr" if target_fpr is not None else "max_f1", target_fpr=target_fpr,
            precision=chosen["precision"], recall=chosen["recall"], fpr=chosen["fpr"], f1=chosen["f1"],
            auroc=auroc(scores, y), n_safe=n_safe, n_unsafe=n_unsafe, n_reference=n_safe + n_unsafe,
            data_revision=pool.data_revision, fingerprint=pool.info.fingerprint,
            computed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            tp=int(chosen["tp"]), fp=int(chosen["fp"]), fn=int(chosen["fn"]), tn=int(chosen["tn"]),
        )
        self._encoders.set_calibration(encoder, cal.to_dict())  # audited as an encoder update
        return cal

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


def _neighbour(pool: Pool, pid: int, sim: float) -> Neighbour:
    row = pool.rows[pid]
    node = pool.nodes.get(row.category_id) if row.category_id is not None else None
    return Neighbour(
        prompt_id=pid, text=row.text, label=row.label, dataset=row.dataset,
        category=node.code if node else None, category_path=list(node.path) if node else [], similarity=float(sim),
    )


