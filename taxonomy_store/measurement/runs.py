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
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from sqlalchemy import select

from taxonomy_store import metrics as M
from taxonomy_store.backend.database import Database
from taxonomy_store.catalog import live_prompts
from taxonomy_store.db.models import Encoder, MetricRun, MetricValue, Taxonomy, table_of
from taxonomy_store.errors import InvalidValue, NotEmbedded, NotFound
from taxonomy_store.measurement.engine import MetricEngine, Progress, RunResult
from taxonomy_store.vocabulary import DEFAULT_LEVEL, DEFAULT_TAXONOMY, choose_level
from taxonomy_store.measurement.baseline_pin import PINNED_METRICS, newest_estimate

if TYPE_CHECKING:
    from taxonomy_store.embeddings.encoders import EncoderInfo, Encoders
    from taxonomy_store.embeddings.indexing import Embeddings
    from taxonomy_store.neighbours.service import Neighbours

__all__ = ["METRICS", "MetricRuns", "RunResult"]

METRICS = ("cp", "separation", "contrast", "detect", "baseline")
ALL_ORDER = ("baseline", "cp", "separation", "contrast", "detect")


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
        # Accepted crosswalk rows onto a taxonomy (source node id -> [(target node id, weight)]), set by store.py.
        self.crosswalk: Callable[[str], dict[int, list[tuple[int, float]]]] | None = None

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
        via_crosswalk: bool = False,
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
        ctx = MetricEngine(self.db, self.embeddings, self.neighbours, info, progress)
        ctx.reestimate = metric in ("baseline", ["baseline"], ("baseline",)) if reestimate_baseline is None else reestimate_baseline
        ctx.pinned_baseline = self.pinned_baseline
        params = dict(k=int(k), level=level, taxonomy=taxonomy, pair_set=pair_set, weighting=weighting)
        # via_crosswalk: prompts of other taxonomies count under TAXONOMY through accepted crosswalk rows;
        # with none accepted the run is the plain one (same params, same values).
        ctx.crosswalk = (self.crosswalk(taxonomy) if via_crosswalk and self.crosswalk else None) or None
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
        note = _trained_on(info, ctx.prompts)
        for r in results if note else ():
            r.details["trained_on"] = note
        return [self._save(r) for r in results]

    def compute_all(
        self, *, encoders: list[str] | None = None, taxonomy: str = DEFAULT_TAXONOMY, level: str | None = None,
        k: int = 10, progress: Progress = None,
    ) -> list[RunResult]:
        """Every metric the store can compute ("all"), for these encoders (default: every registered one);
        level defaults to the taxonomy's voting level (`vocabulary.choose_level`)."""
        if level is None:
            with self.db.session() as s:
                level = choose_level(list(s.scalar(select(Taxonomy.levels).where(Taxonomy.name == taxonomy)) or []))
        names = encoders or [e.name for e in self.encoders.list()]
        runs: list[RunResult] = []
        for n, name in enumerate(names):
            if progress:
                progress(f"{name}: metrics", n, len(names))
            inner = (lambda stage, done, total, name=name: progress(f"{name}: {stage}", done, total)) if progress else None
            runs += self.compute("all", encoder=name, k=k, level=level, taxonomy=taxonomy, progress=inner)
        if progress:
            progress("done", len(names), len(names))
        return runs

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
            p = {k: r.params[k] for k in ("k", "level", "taxonomy", "pair_set", "weighting", "via_crosswalk") if k in r.params}
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
            session.execute(table_of(MetricValue).insert(), [{"run_id": row.id, "name": k[:300], "value": v} for k, v in values.items()])
            r.id = row.id
            r.created_at = row.created_at.isoformat() if row.created_at else None
        r.values, r.details = values, details
        return r


def _trained_on(info: "EncoderInfo", prompts: list) -> dict[str, Any] | None:
    """For an encoder tuned on this store: how many live prompts it trained on. Its metrics are computed over
    them, so beside its base they are "trained on" figures, not held out (None: a base encoder)."""
    from taxonomy_store.backend.training_manifest import trained_on

    seen = trained_on(info, [p.text_sha256 for p in prompts])
    if seen is None:
        return None
    n = int(seen.mask.sum())
    return {"prompts": n, "of": len(prompts), "recorded": seen.recorded, "held_out": n == 0}


def run_key(r: RunResult) -> tuple:
    """What makes two runs the same measurement taken at two times (encoder, metric, parameters)."""
    return _run_key(r)


def _run_key(r: RunResult) -> tuple:
    p = r.params
    held = (tuple(p.get("holdout") or ()), p.get("fraction"), p.get("seed"), bool(p.get("by_dataset")), p.get("scorer"))
    return (r.encoder, r.metric, p.get("k"), str(p.get("level")), p.get("taxonomy"), p.get("pair_set"), p.get("weighting"), held)
