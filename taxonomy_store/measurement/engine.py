"""The metric engine: what one `compute()` of `store.metric_runs` reads once, and each metric's run over it.

It reads labels and categories from SQL (no texts) and the encoder's stored vectors at most once
or twice, computes with the pure functions of `taxonomy_store.metrics`, and returns
`RunResult`s; `measurement/runs.py` stores them. The kNN graph of each evaluated set (the CP set
of a taxonomy level, the labeled set for detection) comes from the neighbour service's graph cache.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from sqlalchemy import select

from taxonomy_store import metrics as M
from taxonomy_store.backend.database import Database
from taxonomy_store.catalog import node_index
from taxonomy_store.db.models import Pair, PairSet, Prompt
from taxonomy_store.errors import EmptyStore, NotEmbedded, NotFound, UnknownTaxonomy
from taxonomy_store.metrics.detection import confusion, majority_category, neighbour_mix
from taxonomy_store.metrics.purity import same_share
from taxonomy_store.measurement.baseline_pin import sample_fingerprint, still_holds
from taxonomy_store.neighbours.graphs import Graph
from taxonomy_store.taxonomy.trees import get_taxonomy, level_depth
from taxonomy_store.vocabulary import JUDGED_LABELS

if TYPE_CHECKING:
    from taxonomy_store.embeddings.encoders import EncoderInfo
    from taxonomy_store.embeddings.indexing import Embeddings, VectorSet
    from taxonomy_store.neighbours.service import Neighbours

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



@dataclass(frozen=True)
class PromptLite:
    id: int
    text_sha256: str
    label: str
    category_id: int | None



class MetricEngine:
    """One compute() call of `store.metric_runs`: what it reads once (SQL state, bookkeeping, the
    vectors when needed) and the runs of each metric over it (`run_<metric>`)."""

    def __init__(self, db: Database, embeddings: "Embeddings", neighbours: "Neighbours", info: "EncoderInfo", progress: Progress):
        self.db, self.embeddings, self.neighbours = db, embeddings, neighbours
        self.info = info
        self.progress = progress
        self.revision = self.db.data_revision()
        with self.db.session() as s:
            # Only what the metrics need (no texts): cheap on large stores.
            self.prompts = [
                PromptLite(*r)
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
        # encoder name -> the newest pinned estimate of b a stored run carries (set by MetricRuns), or None
        self.pinned_baseline: Callable[[str], dict[str, Any] | None] = lambda _encoder: None
        self._pool: VectorSet | None = None  # vectors read from Chroma in this call, reused by every metric of it
        self._graphs: dict[tuple, Graph] = {}
        self._cp_sets: dict[tuple, tuple] = {}
        self.crosswalk: dict[int, list[tuple[int, float]]] | None = None  # accepted rows onto the run's taxonomy

    def vectors(self, ids: list[int]) -> np.ndarray:
        """Stored vectors of these prompts (ascending ids), read from Chroma at most once or twice
        per compute(): the first read takes the whole collection when the store is not much larger."""
        if self._pool is not None:
            try:
                return self._pool.take(ids)
            except KeyError:
                pass
        whole = len(self.prompts) <= max(4 * len(ids), 50_000)
        # the prompts read at the start name the current texts: no second SQL read
        wanted = self.by_id if whole else {i: self.by_id[i] for i in ids if i in self.by_id}
        vs = self.embeddings.vectors_of(self.info, {i: p.text_sha256 for i, p in wanted.items()}, every=whole)
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
            node = self._node_in(p.category_id, taxonomy)
            if node is None:
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

    def _node_in(self, category_id: int, taxonomy: str):
        """The prompt's node in `taxonomy`: its own, or (via crosswalk) the heaviest accepted target of its nearest mapped ancestor."""
        node = self.nodes.get(category_id)
        if node is None or node.taxonomy == taxonomy or not self.crosswalk:
            return node if node is not None and node.taxonomy == taxonomy else None
        targets = next((self.crosswalk[a] for a in reversed(node.id_path) if a in self.crosswalk), None)
        return self.nodes.get(max(targets, key=lambda t: (t[1], -t[0]))[0]) if targets else None

    def _taxonomy_of(self, prompt_id: int) -> str | None:
        cid = self.by_id[prompt_id].category_id
        node = self.nodes.get(cid) if cid is not None else None
        return node.taxonomy if node is not None else None

    def _graph(self, tag: str, ids: np.ndarray, k: int):
        # The graph's keys carry each prompt's text hash: a graph whose keys match the current
        # texts is right whatever the index's state; vectors are read (and must be current)
        # only when rows changed.
        memo = (tag, int(k))
        if memo not in self._graphs:
            hashes = [self.by_id[i].text_sha256 for i in ids.tolist()]
            self._graphs[memo] = self.neighbours.graph(self.info, tag, ids, hashes, k, lambda: self.vectors(ids.tolist()), self.progress)
        return self._graphs[memo]

    def _baseline(self) -> tuple[float, dict[str, Any]]:
        if self.info.baseline is not None:
            return float(self.info.baseline), {"source": "encoder", "provenance": self.info.baseline_provenance}
        hint = f"re-estimate with `tstore metrics baseline --encoder {self.info.name}`, or set it with `tstore encoder set-baseline`"
        if self._baseline_cache is not None:  # estimated in this very call (an explicit re-estimate)
            return self._baseline_cache["baseline"], {"source": "estimated", "pinned": False, "estimate": self._baseline_cache,
                                                      "hint": hint}
        pinned = None if self.reestimate else self.pinned_baseline(self.info.name)
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
            vs = self._every_vector()
            if len(vs) < 2:
                raise NotEmbedded(f"encoder {self.info.name!r} has fewer than two vectors", f"run `tstore embed --encoder {self.info.name}`")
            labels = np.array([self.by_id[int(i)].label for i in vs.prompt_ids])
            est = M.estimate_baseline(vs.vectors, labels, sample=500, seed=0)
            ids = [int(vs.prompt_ids[r]) for r in est.pop("sample_rows")]
            est.update(vectors=len(vs), data_revision=self.revision, sample_ids=ids,
                       sample_fingerprint=sample_fingerprint(ids, self._text_hash))
            self._baseline_cache = est
        return self._baseline_cache

    def _every_vector(self):
        """Every live prompt's current vector: the neighbour service's pool of this encoder when it has
        one (the same vectors, in the same order; no second copy of a million), else read."""
        try:
            pool = self.neighbours.pool(self.info.name)
        except (EmptyStore, NotEmbedded):
            pool = None
        if pool is not None and pool.info.fingerprint == self.info.fingerprint:
            return _PoolVectors(pool.prompt_ids, pool.vectors)
        return self.embeddings.load_vectors(self.info.name)

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
        g = self._graph(f"cp-{taxonomy}-{level_name}" + ("-crosswalk" if self.crosswalk else ""), ids, k)
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
        if self.crosswalk:
            p["via_crosswalk"] = True
            details["mapped_in"] = len([i for i in ids.tolist() if self._taxonomy_of(i) != taxonomy])
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
            cg = self._graph(f"cp-{taxonomy}-{level_name}" + ("-crosswalk" if self.crosswalk else ""), cp_ids, k)
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


@dataclass(frozen=True)
class _PoolVectors:
    """A pool's vectors as `_estimate_baseline` reads a VectorSet: prompt ids ascending and their vectors."""

    prompt_ids: np.ndarray
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.prompt_ids)
