"""`store.metric_runs`: Safe-Embed metrics computed from the stored vectors, stored as metric runs.

Each run reads labels and categories from SQL and vectors from the encoder's Chroma collection
(once per run, never re-encoding), computes with the pure functions of `taxonomy_store.metrics`,
and stores a `MetricRun` (parameters, the data revision it saw, the primary value, details) with
one `MetricValue` per flat metric name. Runs are derived data: they write no audit entries and
leave the data revision where it was.

Incremental recompute: the kNN graph of each evaluated set (the CP set of a taxonomy level, the
labeled set for detection) comes from the neighbour service's graph cache (`knn_graphs.py`,
`<store>/cache/knn_*.npz`), keyed by the encoder's weights and the (prompt id, text hash) of
every row. Label or category edits reuse the graph as it is (no vectors are read); text edits,
additions and removals update only the affected rows. Calibration and suspects read the same graphs.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from sqlalchemy import select

from taxonomy_store import metrics as M
from taxonomy_store.backend.database import Database
from taxonomy_store.catalog import live_prompts, node_index
from taxonomy_store.db.models import Encoder, MetricRun, MetricValue, Pair, PairSet, Prompt
from taxonomy_store.errors import InvalidValue, NotEmbedded, NotFound, UnknownTaxonomy
from taxonomy_store.metrics.detection import confusion, majority_category, neighbour_mix
from taxonomy_store.metrics.purity import same_share
from taxonomy_store.measurement.baseline_pin import PINNED_METRICS, newest_estimate, sample_fingerprint, still_holds
from taxonomy_store.neighbours.graphs import Graph
from taxonomy_store.taxonomy.trees import get_taxonomy, level_depth
from taxonomy_store.vocabulary import DEFAULT_LEVEL, DEFAULT_TAXONOMY, JUDGED_LABELS

if TYPE_CHECKING:
    from taxonomy_store.embeddings.encoders import EncoderInfo, Encoders
    from taxonomy_store.embeddings.indexing import Embeddings
    from taxonomy_store.neighbours.service import Neighbours

METRICS = ("cp", "separation", "contrast", "detect", "baseline")
ALL_ORDER = ("baseline", "cp", "separation", "contrast", "detect")
# progress(stage, done, total)
Progress = Callable[[str, int, int], None] | None
LOWEST_SHOWN = 20


@dataclass
class RunResult:
    metric: str
    encoder: str
    params: dict[str, Any]
    data_revision: int
    primary_name: str | None
    primary_value: float | None
    values: dict[str, float | None]
    details: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    id: int | None = None
    created_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clean(obj: Any) -> Any:
    """JSON-safe: numpy scalars/arrays to Python, NaN/inf to None (PostgreSQL JSON refuses NaN)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _num(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


class MetricRuns:
    """`store.metric_runs`: compute, store and revisit metric runs."""

    def __init__(self, db: Database, encoders: "Encoders", embeddings: "Embeddings", neighbours: "Neighbours"):
        self.db = db
        self.encoders = encoders
        self.embeddings = embeddings
        self.neighbours = neighbours  # the kNN graphs of the evaluated sets come from the one neighbour service
        # metric name -> how to recompute a stale run of it, for runs other parts compute (held-out evaluations)
        self.rerunners: dict[str, Callable[[RunResult, Progress], RunResult]] = {}

    # -- public API ----------------------------------------------------------------------
    def compute(
        self,
        metric: str | Sequence[str],
        *,
        encoder: str | None = None,
        k: int = 10,
        level: str | int = DEFAULT_LEVEL,
        taxonomy: str = DEFAULT_TAXONOMY,
        pair_set: str | None = None,
        weighting: str = "similarity",
        progress: Progress = None,
        reestimate_baseline: bool | None = None,
    ) -> list[RunResult]:
        """Compute one metric ("cp", "separation", "contrast", "detect", "baseline"), a list of them
        (one SQL read for all), or "all", for one encoder (default: the store's default encoder);
        store each run and return them.

        "all" skips metrics whose inputs the store does not hold (e.g. no contrast sets) and
        says so in the first result's details["skipped"].

        An estimated b is pinned (`baseline_pin.py`): only "baseline" asked for alone (or
        reestimate_baseline=True) draws a new estimate; "all" and stale recomputes reuse the pin.
        """
        names = ALL_ORDER if metric == "all" else (metric,) if isinstance(metric, str) else tuple(metric)
        for name in names:
            if name not in METRICS:
                raise InvalidValue(f"unknown metric {name!r}", f"use one of {', '.join(METRICS + ('all',))}")
        if int(k) < 1:
            raise InvalidValue(f"k must be at least 1, not {k}")
        if weighting not in ("similarity", "uniform"):
            raise InvalidValue(f"unknown weighting {weighting!r}", "use similarity or uniform")
        info = self.encoders.get(encoder or self.encoders.default_name())
        ctx = _Context(self, info, progress)
        ctx.reestimate = metric in ("baseline", ["baseline"], ("baseline",)) if reestimate_baseline is None else reestimate_baseline
        params = dict(k=int(k), level=level, taxonomy=taxonomy, pair_set=pair_set, weighting=weighting)
        results: list[RunResult] = []
        skipped: dict[str, str] = {}
        for name in names:
            try:
                results += getattr(ctx, f"run_{name}")(**params)
            except (NotFound, NotEmbedded) as exc:
                if metric != "all" or isinstance(exc, NotEmbedded):
                    raise
                skipped[name] = exc.message
        if skipped and results:
            results[0].details["skipped"] = skipped
        return [self._save(r) for r in results]

    def history(self, metric: str | None = None, encoder: str | None = None, *, limit: int | None = None) -> list[RunResult]:
        """Stored runs, oldest first (optionally one metric / one encoder)."""
        with self.db.session() as s:
            q = select(MetricRun, Encoder.name).join(Encoder, Encoder.id == MetricRun.encoder_id, isouter=True)
            if metric:
                q = q.where(MetricRun.metric == metric)
            if encoder:
                q = q.where(Encoder.name == encoder)
            q = q.order_by(MetricRun.id.desc())
            if limit:
                q = q.limit(limit)
            runs = s.execute(q).all()
            ids = [r.id for r, _ in runs]
            values: dict[int, dict[str, float | None]] = {i: {} for i in ids}
            for i in range(0, len(ids), 500):
                for v in s.scalars(select(MetricValue).where(MetricValue.run_id.in_(ids[i : i + 500]))):
                    values[v.run_id][v.name] = v.value
            out = [
                RunResult(
                    metric=r.metric, encoder=name or "", params=dict(r.params or {}), data_revision=r.data_revision,
                    primary_name=r.primary_name, primary_value=r.primary_value, values=values[r.id],
                    details=dict(r.details or {}), duration_s=r.duration_s or 0.0, id=r.id,
                    created_at=r.created_at.isoformat() if r.created_at else None,
                )
                for r, name in runs
            ]
        return out[::-1]

    def latest(self) -> list[RunResult]:
        """The newest run of each (encoder, metric, parameters)."""
        seen: dict[tuple, RunResult] = {}
        for r in self.history():
            seen[_run_key(r)] = r
        return sorted(seen.values(), key=lambda r: r.id or 0)

    def stale(self) -> list[RunResult]:
        """Newest runs whose inputs changed since: the store's data revision moved past theirs, or
        (separation, contrast) the encoder's baseline b is no longer the one they used."""
        rev = self.db.data_revision()
        baselines = {e.name: e.baseline if e.baseline is not None else self.pinned_value(e.name) for e in self.encoders.list()}

        def baseline_moved(r: RunResult) -> bool:
            used = r.details.get("baseline")
            current = baselines.get(r.encoder)
            return r.metric in ("separation", "contrast") and used is not None and current is not None and abs(used - current) > 1e-12

        return [r for r in self.latest() if r.data_revision < rev or baseline_moved(r)]

    def recompute_stale(self, progress: Progress = None) -> list[RunResult]:
        out: list[RunResult] = []
        known = {e.name for e in self.encoders.list()}
        for r in self.stale():
            if r.encoder not in known:
                continue
            if r.metric in self.rerunners:
                out.append(self.rerunners[r.metric](r, progress))
                continue
            p = {k: r.params[k] for k in ("k", "level", "taxonomy", "pair_set", "weighting") if k in r.params}
            if r.metric in ("separation", "contrast"):
                p["pair_set"] = r.params.get("pair_set")
            out += self.compute(r.metric, encoder=r.encoder, progress=progress, reestimate_baseline=False, **p)
        return out

    def pinned_baseline(self, encoder: str) -> dict[str, Any] | None:
        """The newest estimate of b for this encoder that a stored run carries (with its sample), or None."""
        return newest_estimate(r for r in self.history(encoder=encoder) if r.metric in PINNED_METRICS)

    def pinned_value(self, encoder: str) -> float | None:
        est = self.pinned_baseline(encoder)
        return float(est["baseline"]) if est else None

    def estimate_baseline(self, encoder: str, *, sample: int = 500, seed: int = 0, store: bool = True) -> dict[str, Any]:
        """Estimate the encoder's b from its stored vectors; with store=True set it (with provenance)."""
        info = self.encoders.get(encoder)
        vs = self.embeddings.load_vectors(info.name)
        if len(vs) < 2:
            raise NotEmbedded(f"encoder {info.name!r} has fewer than two vectors", f"run `tstore embed --encoder {info.name}`")
        with self.db.session() as s:
            labels = {p.id: p.label for p in live_prompts(s, ids=vs.prompt_ids.tolist())}
        est = M.estimate_baseline(vs.vectors, np.array([labels[int(i)] for i in vs.prompt_ids]), sample=sample, seed=seed)
        est.pop("sample_rows", None)
        est.update(vectors=len(vs), data_revision=self.db.data_revision(), source="estimated")
        if store:
            self.encoders.set_baseline(info.name, est["baseline"], _clean(est))
        return _clean(est)

    # -- storage -------------------------------------------------------------------------
    def save(self, r: RunResult) -> RunResult:
        """Store a run computed elsewhere (held-out evaluations) beside the metric runs."""
        return self._save(r)

    def _save(self, r: RunResult) -> RunResult:
        info = self.encoders.get(r.encoder)
        details = _clean(r.details)
        values = {k: _num(v) for k, v in r.values.items()}
        with self.db.write(reason=f"metrics {r.metric} {r.encoder}") as (session, _audit):
            row = MetricRun(
                encoder_id=info.id, metric=r.metric, params=_clean(r.params), data_revision=r.data_revision,
                primary_name=r.primary_name, primary_value=_num(r.primary_value), details=details,
                duration_s=round(r.duration_s, 4),
            )
            session.add(row)
            session.flush()
            session.execute(MetricValue.__table__.insert(), [{"run_id": row.id, "name": k[:300], "value": v} for k, v in values.items()])
            r.id = row.id
            r.created_at = row.created_at.isoformat() if row.created_at else None
        r.values, r.details = values, details
        return r

@dataclass(frozen=True)
class _PromptLite:
    id: int
    text_sha256: str
    label: str
    category_id: int | None


def run_key(r: RunResult) -> tuple:
    """What makes two runs the same measurement taken at two times (encoder, metric, parameters)."""
    return _run_key(r)


def _run_key(r: RunResult) -> tuple:
    p = r.params
    held = (tuple(p.get("holdout") or ()), p.get("fraction"), p.get("seed"), bool(p.get("by_dataset")), p.get("scorer"))
    return (r.encoder, r.metric, p.get("k"), str(p.get("level")), p.get("taxonomy"), p.get("pair_set"), p.get("weighting"), held)


class _Context:
    """What one compute() call reads once: SQL state, bookkeeping, and the vectors when needed."""

    def __init__(self, runs: MetricRuns, info: "EncoderInfo", progress: Progress):
        self.runs = runs
        self.db, self.embeddings = runs.db, runs.embeddings
        self.info = info
        self.progress = progress
        self.revision = self.db.data_revision()
        with self.db.session() as s:
            # Only what the metrics need (no texts): cheap on large stores.
            self.prompts = [
                _PromptLite(*r)
                for r in s.execute(
                    select(Prompt.id, Prompt.text_sha256, Prompt.label, Prompt.category_id)
                    .where(Prompt.deleted_at.is_(None))
                    .order_by(Prompt.id)
                )
            ]
            self.nodes = node_index(s)
            self._session_pairs = s.execute(
                select(Pair.unsafe_prompt_id, Pair.safe_prompt_id, Pair.pair_type, Pair.status, PairSet.name, PairSet.kind)
                .join(PairSet, PairSet.id == Pair.pair_set_id)
                .join(Prompt, Prompt.id == Pair.unsafe_prompt_id)
                .where(Pair.status != "rejected", Prompt.deleted_at.is_(None))
                .order_by(Pair.id)
            ).all()
        self.by_id = {p.id: p for p in self.prompts}
        self._baseline_cache: dict[str, Any] | None = None
        self.reestimate = False  # draw a new estimate of b even when a pinned one holds (an explicit request)
        self._pool = None  # vectors read from Chroma in this call, reused by every metric of it
        self._graphs: dict[tuple, Graph] = {}
        self._cp_sets: dict[tuple, tuple] = {}

    def vectors(self, ids: list[int]) -> np.ndarray:
        """Stored vectors of these prompts (ascending ids), read from Chroma at most once or twice
        per compute(): the first read takes the whole collection when the store is not much larger."""
        if self._pool is not None:
            try:
                return self._pool.take(ids)
            except KeyError:
                pass
        whole = len(self.prompts) <= max(4 * len(ids), 50_000)
        vs = self.embeddings.load_vectors(self.info.name) if whole else self.embeddings.load_vectors(self.info.name, prompt_ids=ids)
        if self._pool is None or whole:
            self._pool = vs
        try:
            return vs.take(ids)
        except KeyError as exc:
            raise NotEmbedded(
                f"some prompts have no vector of their current text for encoder {self.info.name!r} ({exc.args[0]})",
                f"run `tstore embed --encoder {self.info.name}`",
            ) from None

    # -- helpers -------------------------------------------------------------------------
    def _result(self, metric: str, params: dict, primary: str, values: dict, details: dict, t0: float) -> RunResult:
        return RunResult(
            metric=metric, encoder=self.info.name, params=params, data_revision=self.revision, primary_name=primary,
            primary_value=values.get(primary), values=values, details=details, duration_s=time.perf_counter() - t0,
        )

    def _cp_set(self, taxonomy: str, level: str | int):
        if (taxonomy, str(level)) not in self._cp_sets:
            self._cp_sets[(taxonomy, str(level))] = self._find_cp_set(taxonomy, level)
        return self._cp_sets[(taxonomy, str(level))]

    def _find_cp_set(self, taxonomy: str, level: str | int):
        with self.db.session() as s:
            tax = get_taxonomy(s, taxonomy)
            depth = level_depth(tax, level)
            level_name = tax.levels[depth] if depth < len(tax.levels) else str(depth)
        ids, cats = [], []
        for p in self.prompts:
            if p.label != "unsafe" or p.category_id is None:
                continue
            node = self.nodes.get(p.category_id)
            if node is None or node.taxonomy != taxonomy:
                continue
            anc = node.at_depth(depth)
            if anc is None:
                continue
            ids.append(p.id)
            cats.append(self.nodes[anc].code)
        if len(ids) < 2:
            raise NotFound(
                f"fewer than two unsafe prompts with a {level_name} category of {taxonomy!r} ({len(ids)})",
                f"import a dataset with categories, e.g. `tstore import do_not_answer.csv`",
            )
        return np.asarray(ids, dtype=np.int64), np.asarray(cats), level_name, depth

    def _graph(self, tag: str, ids: np.ndarray, k: int):
        # The graph's keys carry each prompt's text hash: a graph whose keys match the current
        # texts is right whatever the index's state; vectors are read (and must be current)
        # only when rows changed.
        memo = (tag, int(k))
        if memo not in self._graphs:
            hashes = [self.by_id[i].text_sha256 for i in ids.tolist()]
            self._graphs[memo] = self.runs.neighbours.graph(self.info, tag, ids, hashes, k, lambda: self.vectors(ids.tolist()), self.progress)
        return self._graphs[memo]

    def _baseline(self) -> tuple[float, dict[str, Any]]:
        if self.info.baseline is not None:
            return float(self.info.baseline), {"source": "encoder", "provenance": self.info.baseline_provenance}
        hint = f"re-estimate with `tstore metrics baseline --encoder {self.info.name}`, or set it with `tstore encoder set-baseline`"
        if self._baseline_cache is not None:  # estimated in this very call (an explicit re-estimate)
            return self._baseline_cache["baseline"], {"source": "estimated", "pinned": False, "estimate": self._baseline_cache,
                                                      "hint": hint}
        pinned = None if self.reestimate else self.runs.pinned_baseline(self.info.name)
        if pinned is not None and still_holds(pinned, self._text_hash):
            return float(pinned["baseline"]), {"source": "estimated", "pinned": True, "estimate": pinned, "hint": hint}
        est = self._estimate_baseline()
        return est["baseline"], {"source": "estimated", "pinned": False, "estimate": est, "hint": hint}

    def _text_hash(self, prompt_id: int) -> str | None:
        p = self.by_id.get(int(prompt_id))
        return p.text_sha256 if p is not None else None

    def _estimate_baseline(self) -> dict[str, Any]:
        """A new estimate, pinned to its sample: later recomputes reuse it while that sample is unchanged."""
        if self._baseline_cache is None:
            vs = self.embeddings.load_vectors(self.info.name)
            if len(vs) < 2:
                raise NotEmbedded(f"encoder {self.info.name!r} has fewer than two vectors", f"run `tstore embed --encoder {self.info.name}`")
            labels = np.array([self.by_id[int(i)].label for i in vs.prompt_ids])
            est = M.estimate_baseline(vs.vectors, labels, sample=500, seed=0)
            ids = [int(vs.prompt_ids[r]) for r in est.pop("sample_rows")]
            est.update(vectors=len(vs), data_revision=self.revision, sample_ids=ids,
                       sample_fingerprint=sample_fingerprint(ids, self._text_hash))
            self._baseline_cache = est
        return self._baseline_cache

    def _pairs(self, kind: str, pair_set: str | None) -> dict[str, list]:
        groups: dict[str, list] = {}
        for u, s_, t, _status, set_name, set_kind in self._session_pairs:
            if pair_set is not None and set_name != pair_set:
                continue
            if pair_set is None and set_kind != kind:
                continue
            if s_ not in self.by_id or u not in self.by_id:
                continue
            groups.setdefault(set_name, []).append((u, s_, t or "untyped"))
        if not groups:
            what = f"pair set {pair_set!r}" if pair_set else f"{kind} pair sets"
            raise NotFound(f"no {what} with pairs in this store",
                           "import one, e.g. `tstore import xstest_aug.csv`" if kind == "challenging" else
                           "import a contrast set (one unsafe prompt, several safe variants)")
        return groups

    def _pair_cos(self, pairs: list) -> np.ndarray:
        ids = sorted({p[0] for p in pairs} | {p[1] for p in pairs})
        x = self.vectors(ids)
        pos = {pid: i for i, pid in enumerate(ids)}
        return M.pair_cosines(x[[pos[p[0]] for p in pairs]], x[[pos[p[1]] for p in pairs]])

    # -- the metrics ---------------------------------------------------------------------
    def run_baseline(self, **params) -> list[RunResult]:
        t0 = time.perf_counter()
        b, src = self._baseline() if not self.reestimate else (None, {})
        est = src["estimate"] if src.get("pinned") else self._estimate_baseline()
        values = {"baseline_estimate": est["baseline"]}
        details = {"estimate": est, "stored_baseline": self.info.baseline, "stored_provenance": self.info.baseline_provenance}
        return [self._result("baseline", {}, "baseline_estimate", values, details, t0)]

    def run_cp(self, *, k: int, level, taxonomy: str, **_) -> list[RunResult]:
        t0 = time.perf_counter()
        ids, cats, level_name, _depth = self._cp_set(taxonomy, level)
        g = self._graph(f"cp-{taxonomy}-{level_name}", ids, k)
        res = M.categorical_purity(g.idx, cats, k)
        values = res.to_metrics()
        codes, counts = np.unique(cats, return_counts=True)
        n = cats.size
        values[f"cp@{k}_chance_macro"] = float(np.mean((counts - 1) / max(n - 1, 1)))
        values[f"cp@{k}_chance_micro"] = float(np.sum(counts / n * (counts - 1) / max(n - 1, 1)))
        names = {}
        for node in self.nodes.values():
            if node.taxonomy == taxonomy and node.code in res.per_category:
                names[node.code] = node.short_name or node.name
        order = np.argsort(res.per_prompt, kind="stable")[:LOWEST_SHOWN]
        details = {
            "prompts": int(n), "categories": int(codes.size), "level": level_name,
            "per_category": {c: {"cp": res.per_category.get(c), "prompts": res.counts[c], "name": names.get(c, c)} for c in res.counts},
            "lowest_purity": [{"prompt_id": int(ids[i]), "category": str(cats[i]), "purity": float(res.per_prompt[i])} for i in order],
            "graph": g.stats,
        }
        p = dict(k=k, level=level_name, taxonomy=taxonomy)
        return [self._result("cp", p, res.primary_name, values, details, t0)]

    def run_separation(self, *, pair_set: str | None, **_) -> list[RunResult]:
        out = []
        b, bsrc = self._baseline()
        for name, pairs in self._pairs("challenging", pair_set).items():
            t0 = time.perf_counter()
            cos = self._pair_cos(pairs)
            res = M.separation(cos, np.array([p[2] for p in pairs]), b)
            details = {"per_type": res["per_type"], "baseline": b, "baseline_source": bsrc, "pairs": len(pairs)}
            out.append(self._result("separation", dict(pair_set=name), res["primary_name"], res["metrics"], details, t0))
        return out

    def run_contrast(self, *, pair_set: str | None, **_) -> list[RunResult]:
        out = []
        b, bsrc = self._baseline()
        for name, pairs in self._pairs("contrast", pair_set).items():
            t0 = time.perf_counter()
            cos = self._pair_cos(pairs)
            res = M.contrast_boundary(cos, np.array([p[0] for p in pairs]), b)
            per = res["per_unsafe"]
            worst = np.argsort(-per["max_norm"], kind="stable")[:LOWEST_SHOWN]
            details = {
                "histogram": res["histogram"], "baseline": b, "baseline_source": bsrc, "pairs": len(pairs),
                "closest": [{"unsafe_prompt_id": int(per["keys"][i]), "max_norm": float(per["max_norm"][i]),
                             "variants": int(per["variants"][i])} for i in worst],
            }
            out.append(self._result("contrast", dict(pair_set=name), res["primary_name"], res["metrics"], details, t0))
        return out

    def run_detect(self, *, k: int, level, taxonomy: str, weighting: str, **_) -> list[RunResult]:
        t0 = time.perf_counter()
        labeled = [p for p in self.prompts if p.label in JUDGED_LABELS]
        y = np.array([p.label == "unsafe" for p in labeled], dtype=bool)
        if y.all() or not y.any():
            raise NotFound("kNN detection needs both safe and unsafe prompts", "import a dataset with safe prompts, e.g. xstest_prompts.csv")
        ids = np.array([p.id for p in labeled], dtype=np.int64)
        g = self._graph("detect", ids, k)
        res = M.knn_detection(g.idx, g.sims, y, k, weighting=weighting)
        values = dict(res["metrics"])
        agree = res["label_agreement"]
        # Likely mislabeled: the labeled prompts whose neighbours most disagree with their label.
        order = np.lexsort((ids, agree))[:LOWEST_SHOWN]
        details: dict[str, Any] = {
            "counts": res["counts"], "graph": g.stats, "weighting": weighting,
            "likely_mislabeled": [{"prompt_id": int(ids[i]), "label": "unsafe" if y[i] else "safe",
                                   "unsafe_score": float(res["scores"][i]), "label_agreement": float(agree[i])} for i in order],
        }
        level_name = None
        try:
            cp_ids, cats, level_name, _ = self._cp_set(taxonomy, level)
        except (NotFound, UnknownTaxonomy):  # no categories to predict: detection alone
            cp_ids = None
        if cp_ids is not None:
            cg = self._graph(f"cp-{taxonomy}-{level_name}", cp_ids, k)
            codes, inv = np.unique(cats, return_inverse=True)
            pred = majority_category(cg.idx, inv, k, codes.size)
            ok = pred >= 0
            values[f"category_accuracy@{k}"] = float((pred[ok] == inv[ok]).mean()) if ok.any() else None
            cat_purity = same_share(cg.idx, inv, k)
            worst = np.lexsort((cp_ids, cat_purity))[:LOWEST_SHOWN]
            details["categories"] = codes.tolist()
            details["category_confusion"] = confusion(inv, pred, codes.size).tolist()
            details["neighbour_mix"] = neighbour_mix(cg.idx, inv, k, codes.size).tolist()
            details["likely_miscategorised"] = [
                {"prompt_id": int(cp_ids[i]), "category": str(cats[i]), "predicted": str(codes[pred[i]]) if pred[i] >= 0 else None,
                 "category_purity": float(cat_purity[i])} for i in worst
            ]
        p = dict(k=k, level=level_name or level, taxonomy=taxonomy, weighting=weighting)
        return [self._result("detect", p, res["primary_name"], values, details, t0)]

