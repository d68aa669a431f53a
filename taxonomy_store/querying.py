"""Query: the stored prompts nearest to new text, a category vote, and a calibrated unsafe verdict.

Two read paths, chosen by measurement (benchmarks/query.py):
- unfiltered queries use an exact in-memory index: the encoder's vectors are read once per
  process from Chroma (`store.index.load_vectors`) and top-k is one matrix product. It is
  reloaded when the store's data revision or the encoder's embeddings change.
- filtered queries (dataset, label) go to Chroma with a `where` (`store.index.nearest`).

The unsafe score of a prompt is the metrics package's kNN detection score
(`metrics.detection.knn_scores`): the similarity-weighted share of unsafe prompts among its k
nearest labeled prompts (weights: cosine clipped at 0). `calibrate` computes it for every
labeled prompt leave-one-out (a prompt never votes for itself) and picks the threshold; the
verdict of `query` always uses the unfiltered labeled neighbourhood and the calibration's k, so
it is the very score that was calibrated, whatever k and filters the neighbour list uses.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import func, select

from .audit import data_revision
from .catalog import NodeInfo, PromptRow, live_prompts, node_index
from .db.models import AuditEntry, Embedding, Encoder, Taxonomy
from .errors import EmptyPrompt, EmptyStore, InvalidValue, NotEmbedded, NotEnoughLabels, UnknownTaxonomy
from .metrics.detection import auroc, best_f1, knn_scores
from .metrics.similarity import knn, knn_query

if TYPE_CHECKING:
    from .encoders import EncoderInfo
    from .store import Store

DEFAULT_ENCODER = "minilm"
DEFAULT_K = 10
DEFAULT_MARGIN = 0.05
DEFAULT_TAXONOMY = "do-not-answer"
SCORE_NAME = "similarity_weighted_unsafe_share"
LABEL_CODE = {"unsafe": 1, "safe": 0}


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


# -- the in-memory exact index ----------------------------------------------------------------
@dataclass
class _Snapshot:
    token: tuple
    info: "EncoderInfo"
    prompt_ids: np.ndarray  # every live prompt with a current vector, by id
    vectors: np.ndarray  # float32 (n, d), L2-normalised
    labeled: np.ndarray  # rows of the labeled (safe/unsafe) prompts: the voters of the unsafe score
    is_unsafe: np.ndarray  # bool, per labeled row
    missing: int  # live prompts without a current vector
    rows: dict[int, PromptRow]
    nodes: dict[int, NodeInfo]
    taxonomies: dict[str, list[str]]  # name -> levels
    calibration: Calibration | None
    data_revision: int  # of the data, not counting encoder bookkeeping

    @property
    def encoder(self) -> str:
        return self.info.name


class Querying:
    """`store.search`: query and calibrate."""

    def __init__(self, store: "Store"):
        self.store = store
        self._snapshots: dict[str, _Snapshot] = {}
        self._default: str | None = None  # the default encoder's name, resolved once
        self._local = threading.local()

    # -- bookkeeping ----------------------------------------------------------------------
    @staticmethod
    @lru_cache(maxsize=64)
    def _token_statement(encoder: str):
        enc_id = select(Encoder.id).where(Encoder.name == encoder).scalar_subquery()
        return select(
            select(func.coalesce(func.max(AuditEntry.id), 0)).scalar_subquery(),
            enc_id,
            select(Encoder.fingerprint).where(Encoder.name == encoder).scalar_subquery(),
            select(func.count()).select_from(Embedding).where(Embedding.encoder_id == enc_id).scalar_subquery(),
            select(func.max(Embedding.embedded_at)).where(Embedding.encoder_id == enc_id).scalar_subquery(),
        )

    @classmethod
    def _token(cls, session, encoder: str) -> tuple:
        """Changes whenever the data, the encoder row or its embeddings change: one round trip."""
        row = session.execute(cls._token_statement(encoder)).one()
        return (int(row[0] or 0), row[1], row[2], int(row[3] or 0), str(row[4]))

    def _current_token(self, encoder: str) -> tuple:
        """The token, read on a connection this thread keeps: opening one per query costs more than the read."""
        conn = getattr(self._local, "conn", None)
        try:
            if conn is None or conn.closed:
                conn = self._local.conn = self.store.engine.connect()
            try:
                return self._token(conn, encoder)
            finally:
                conn.rollback()  # end the read transaction: never pin an old snapshot of the database
        except Exception:
            self._local.conn = None
            with self.store.session() as s:
                return self._token(s, encoder)

    def _snapshot(self, encoder: str) -> _Snapshot:
        """The encoder's vectors and the prompts' rows, reloaded only when the store has changed."""
        encoders = self.store.encoders  # registers the default encoder on a new store: before the read
        token = self._current_token(encoder)
        snap = self._snapshots.get(encoder)
        if snap is not None and snap.token == token:
            return snap
        with self.store.session() as s:
            token = self._token(s, encoder)
            info = encoders.get(encoder)  # UnknownEncoder with its hint
            rows = {r.id: r for r in live_prompts(s)}
            if not rows:
                raise EmptyStore(
                    "the store holds no prompts",
                    "import some first, e.g. `tstore import do_not_answer.csv`",
                )
            if token[3] == 0:
                raise NotEmbedded(f"encoder {encoder!r} has no vectors yet", f"run `tstore embed --encoder {encoder}`")
            nodes = node_index(s)
            taxonomies = {n: list(lv or []) for n, lv in s.execute(select(Taxonomy.name, Taxonomy.levels)).all()}
            data_rev = data_revision(s)
        vs = self.store.index.load_vectors(encoder)  # EncoderMismatch when the collection holds other weights
        ids = np.asarray(vs.prompt_ids, dtype=np.int64)
        keep = np.fromiter((int(i) in rows for i in ids), dtype=bool, count=len(ids))
        ids, vectors = ids[keep], np.ascontiguousarray(vs.vectors[keep], dtype=np.float32)
        if len(ids) == 0:
            raise NotEmbedded(
                f"encoder {encoder!r} has no vectors of the store's current prompts", f"run `tstore embed --encoder {encoder}`"
            )
        labels = np.array([LABEL_CODE.get(rows[int(i)].label, -1) for i in ids], dtype=np.int8)
        labeled = np.flatnonzero(labels >= 0)
        snap = _Snapshot(
            token=token, info=info, prompt_ids=ids, vectors=vectors, labeled=labeled, is_unsafe=labels[labeled] == 1,
            missing=int(vs.missing), rows=rows, nodes=nodes, taxonomies=taxonomies,
            calibration=Calibration.from_dict(info.calibration), data_revision=data_rev,
        )
        self._snapshots[encoder] = snap
        return snap

    def _encode(self, snap: _Snapshot, texts: list[str]) -> np.ndarray:
        # The live encoder checks the model's weights against the registry once per process
        # (EncoderMismatch when they changed since the vectors were made).
        return np.asarray(self.store.index.live_encoder(snap.info).encode(texts), dtype=np.float32)

    def _encoder_name(self, encoder: str | None) -> str:
        if encoder:
            return encoder
        if self._default is None or os.environ.get("TSTORE_ENCODER"):
            self._default = self.store.encoders.default_name()
        return self._default

    # -- query ----------------------------------------------------------------------------
    def query(
        self,
        texts: list[str],
        *,
        encoder: str | None = None,
        k: int = DEFAULT_K,
        level: str = "harm_type",
        taxonomy: str | None = None,
        dataset: str | list[str] | None = None,
        label: str | list[str] | None = None,
        ids: list[Any] | None = None,
    ) -> list[QueryResult]:
        """The k nearest stored prompts of each text, a category vote, an unsafe score and verdict.

        `taxonomy` (default do-not-answer, when loaded) names whose categories vote, at `level`;
        `dataset` / `label` filter the neighbours (in Chroma), never the verdict's voters.
        `ids` (optional, one per text) are carried into the results, for batch input.
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
        filters = _filters(dataset, label)
        encoder = self._encoder_name(encoder)
        snap = self._snapshot(encoder)
        if not texts:
            return []
        vote_levels: list[str] = []
        extra: list[str] = []
        if (taxonomy or DEFAULT_TAXONOMY) in snap.taxonomies:
            vote_levels = snap.taxonomies[taxonomy or DEFAULT_TAXONOMY]
            if level not in vote_levels:
                raise InvalidValue(
                    f"taxonomy {taxonomy or DEFAULT_TAXONOMY!r} has no level {level!r}",
                    f"levels: {', '.join(vote_levels) or 'none named'}",
                )
        elif taxonomy is not None:
            known = ", ".join(sorted(snap.taxonomies))
            raise UnknownTaxonomy(
                f"no taxonomy {taxonomy!r} in this store",
                f"loaded: {known}" if known else f"load one with `tstore taxonomy load {taxonomy}`",
            )
        else:
            extra.append(f"taxonomy {DEFAULT_TAXONOMY!r} is not loaded: no category vote (`tstore taxonomy load {DEFAULT_TAXONOMY}`)")
        taxonomy = taxonomy or DEFAULT_TAXONOMY
        depth = vote_levels.index(level) if vote_levels else 0
        cal, warnings, blocking = snap.calibration, *self._warnings(snap)
        warnings += extra

        qv = self._encode(snap, list(texts))
        verdict_k = cal.k if cal is not None else k
        everyone_votes = len(snap.labeled) == len(snap.prompt_ids)
        idx = sims = None
        if everyone_votes or not filters:
            # one exact top-k serves the neighbour list and (when every prompt is labeled) the verdict
            idx, sims = knn_query(qv, snap.vectors, max(k, verdict_k) if everyone_votes else k, assume_normalised=True)
        if everyone_votes:
            scores = knn_scores(idx, sims, snap.is_unsafe, verdict_k)
        else:
            scores = self._scores(snap, qv, verdict_k)
        if filters:
            hits = self.store.index.nearest(encoder, qv, k, where=_where(filters))
        else:
            hits = [
                [(int(snap.prompt_ids[j]), float(v)) for j, v in zip(ii[:k], ss[:k]) if j >= 0] for ii, ss in zip(idx, sims)
            ]

        results = []
        for i, text in enumerate(texts):
            neighbours = [self._neighbour(snap, pid, sim) for pid, sim in hits[i] if pid in snap.rows]
            weights = np.clip(np.array([n.similarity for n in neighbours], dtype=np.float64), 0.0, None)
            cat_ids = [snap.rows[n.prompt_id].category_id for n in neighbours]
            votes = category_votes(cat_ids, weights, snap.nodes, taxonomy, depth, level) if vote_levels else []
            rollup = {
                vote_levels[d]: category_votes(cat_ids, weights, snap.nodes, taxonomy, d, vote_levels[d]) for d in range(depth - 1, -1, -1)
            }
            score = None if scores is None or math.isnan(scores[i]) else float(scores[i])
            verdict, reason = ("uncertain", blocking) if blocking else decide(score, cal)
            results.append(
                QueryResult(
                    index=i, id=ids[i] if ids is not None else None, text=text, encoder=encoder, k=k, taxonomy=taxonomy,
                    level=level, filters=filters, neighbours=neighbours, categories=votes, rollup=rollup,
                    unsafe_score=score, verdict=verdict, verdict_reason=reason,
                    threshold=cal.threshold if cal else None, margin=cal.margin if cal else None, warnings=list(warnings),
                )
            )
        return results

    @staticmethod
    def _scores(snap: _Snapshot, qv: np.ndarray, k: int) -> np.ndarray | None:
        """Unsafe scores of new vectors: the calibrated definition, over the labeled prompts, unfiltered."""
        if len(snap.labeled) == 0:
            return None
        voters = snap.vectors if len(snap.labeled) == len(snap.prompt_ids) else snap.vectors[snap.labeled]
        nb, sims = knn_query(qv, voters, k, assume_normalised=True)
        return knn_scores(nb, sims, snap.is_unsafe, k)

    @staticmethod
    def _warnings(snap: _Snapshot) -> tuple[list[str], str | None]:
        """Warnings for every result, and the reason the verdict cannot be trusted at all (or None)."""
        cal, msgs, blocking = snap.calibration, [], None
        if snap.missing:
            msgs.append(
                f"{snap.missing} live prompts have no current vector for encoder {snap.encoder!r}; "
                f"run `tstore embed --encoder {snap.encoder}`"
            )
        if cal is None:
            return msgs, None
        if cal.fingerprint and snap.info.fingerprint and cal.fingerprint != snap.info.fingerprint:
            blocking = (
                f"the calibration of encoder {snap.encoder!r} was computed with other weights; "
                f"run `tstore calibrate --encoder {snap.encoder}`"
            )
            msgs.append(blocking)
        elif snap.data_revision > cal.data_revision:
            msgs.append(
                f"the store's data changed since encoder {snap.encoder!r} was calibrated "
                f"(data revision {cal.data_revision} -> {snap.data_revision}); "
                f"run `tstore calibrate --encoder {snap.encoder}`"
            )
        return msgs, blocking

    @staticmethod
    def _neighbour(snap: _Snapshot, pid: int, sim: float) -> Neighbour:
        row = snap.rows[pid]
        node = snap.nodes.get(row.category_id) if row.category_id is not None else None
        return Neighbour(
            prompt_id=pid, text=row.text, label=row.label, dataset=row.dataset,
            category=node.code if node else None, category_path=list(node.path) if node else [], similarity=float(sim),
        )

    # -- calibrate ------------------------------------------------------------------------
    def loo_scores(self, encoder: str | None = None, *, k: int = DEFAULT_K) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Leave-one-out unsafe scores of the labeled prompts: (prompt ids, scores, is_unsafe)."""
        snap = self._snapshot(self._encoder_name(encoder))
        if len(snap.labeled) < 2:
            return snap.prompt_ids[snap.labeled], np.zeros(len(snap.labeled)), snap.is_unsafe
        nb, sims = knn(snap.vectors[snap.labeled], k, assume_normalised=True)
        return snap.prompt_ids[snap.labeled], knn_scores(nb, sims, snap.is_unsafe, k), snap.is_unsafe

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
        snap = self._snapshot(encoder)
        n_unsafe = int(snap.is_unsafe.sum())
        n_safe = int(len(snap.is_unsafe) - n_unsafe)
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
            auroc=auroc(scores, y), n_safe=n_safe, n_unsafe=n_unsafe, n_reference=int(len(snap.labeled)),
            data_revision=snap.data_revision, fingerprint=snap.info.fingerprint,
            computed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            tp=int(chosen["tp"]), fp=int(chosen["fp"]), fn=int(chosen["fn"]), tn=int(chosen["tn"]),
        )
        self.store.encoders.set_calibration(encoder, cal.to_dict())  # audited as an encoder update
        return cal

    def calibration(self, encoder: str | None = None) -> Calibration | None:
        """The encoder's stored calibration, or None."""
        return Calibration.from_dict(self.store.encoders.get(self._encoder_name(encoder)).calibration)


def _where(filters: dict[str, Any]) -> dict[str, Any]:
    """Chroma metadata filter (keys of `indexing.vector_metadata`): one value, or $in for several."""
    return {key: ({"$in": list(v)} if isinstance(v, list) else v) for key, v in filters.items()}


def _filters(dataset, label) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (("dataset", dataset), ("label", label)):
        if value is None or value == [] or value == ():
            continue
        values = [value] if isinstance(value, str) else list(value)
        if key == "label":
            bad = [v for v in values if v not in ("safe", "unsafe", "unlabeled")]
            if bad:
                raise InvalidValue(f"unknown label {bad[0]!r}", "labels: safe, unsafe, unlabeled")
        out[key] = values[0] if len(values) == 1 else values
    return out
