"""`store.review`: read-only views the curators' TUI needs that no other part offers.

Suspects (prompts whose neighbours carry another label or category), the nearest stored
neighbours of a stored prompt, a pair's similarity under every encoder, and the latest metric
values arranged per category / pair type / encoder. Built only on the other parts' public
methods and the `catalog` read helpers; nothing here writes (recomputing metrics is
`store.metric_runs.compute_all`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from taxonomy_store.backend.database import Database
from taxonomy_store.catalog import NodeInfo, PromptRow, live_prompts, node_index
from taxonomy_store.curation.edits import PromptView
from taxonomy_store.errors import NotEmbedded, NotFound
from taxonomy_store.taxonomy.trees import depth_of_level
from taxonomy_store.vocabulary import DEFAULT_TAXONOMY, JUDGED_LABELS, choose_level

if TYPE_CHECKING:
    from taxonomy_store.embeddings.encoders import Encoders
    from taxonomy_store.embeddings.indexing import Embeddings
    from taxonomy_store.measurement.runs import MetricRuns
    from taxonomy_store.neighbours.service import Neighbours
    from taxonomy_store.taxonomy.trees import Taxonomies

DEFAULT_K = 10


@dataclass(frozen=True)
class ReviewNeighbour:
    prompt_id: int
    text: str
    label: str
    category: str | None
    similarity: float


@dataclass
class Suspect:
    prompt: PromptView
    purity: float  # share of the k nearest labelled/categorised prompts that agree with it
    suggested_label: str | None
    suggested_category: str | None
    by: str
    k: int
    neighbours: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class LabelIssue:
    prompt: PromptView
    score: float  # out-of-sample probability of the stored label
    suggested_label: str
    p_suggested: float
    twin_pair: int | None  # a pair this prompt is a side of (a designed near-miss), or None
    by: str = "label"
    suggested_category: str | None = None


def _view(row: PromptRow, nodes: dict[int, NodeInfo]) -> PromptView:
    node = nodes.get(row.category_id) if row.category_id is not None else None
    return PromptView(
        id=row.id, text=row.text, label=row.label, category_code=node.code if node else None,
        category_path=node.path if node else (), taxonomy=node.taxonomy if node else None,
        dataset=row.dataset, revision=row.revision, deleted=False,
    )


class Review:
    def __init__(
        self, db: Database, taxonomies: "Taxonomies", encoders: "Encoders", embeddings: "Embeddings", metric_runs: "MetricRuns",
        neighbours: "Neighbours",
    ):
        self.db = db
        self.taxonomies = taxonomies
        self.encoders = encoders
        self.embeddings = embeddings
        self.metric_runs = metric_runs
        self._nearest = neighbours  # the one exact neighbour service: the same neighbours as query and the metrics

    # -- prompts and neighbours ------------------------------------------------------------
    def _rows(self, ids: list[int] | None = None) -> tuple[dict[int, PromptRow], dict[int, NodeInfo]]:
        with self.db.session() as s:
            rows = {r.id: r for r in live_prompts(s, ids)}
            nodes = node_index(s)
        return rows, nodes

    def revision(self) -> tuple:
        """A cheap token that moves whenever what a screen shows may have: the data revision (edits,
        imports), the newest metric run, and the newest vector written (embeds). The TUI polls it."""
        from sqlalchemy import func, select

        from taxonomy_store.db.models import Embedding, MetricRun

        revision = self.db.data_revision()
        with self.db.session() as s:
            return (revision, s.scalar(select(func.max(MetricRun.id))) or 0,
                    s.scalar(select(func.count()).select_from(Embedding)) or 0, str(s.scalar(select(func.max(Embedding.embedded_at)))))

    def missing_vectors(self, encoder: str) -> int:
        """Live prompts without a vector of their current text under this encoder (all, if none embedded)."""
        try:
            return int(self._nearest.pool(encoder).missing)
        except NotEmbedded:
            with self.db.session() as s:
                return len(live_prompts(s))

    def datasets(self) -> list[str]:
        """Names of the datasets live prompts were first seen in (for the prompt filters)."""
        with self.db.session() as s:
            return sorted({r.dataset for r in live_prompts(s) if r.dataset})

    def neighbours(self, prompt_id: int, *, encoder: str, k: int = 5) -> list[ReviewNeighbour]:
        """The k stored prompts nearest to a stored prompt (itself left out), most similar first."""
        try:
            pool = self._nearest.pool(encoder)
        except NotEmbedded:
            return []
        (hits,) = self._nearest.of_stored(encoder, [prompt_id], k)
        out = []
        for pid, sim in hits:
            row = pool.rows[pid]
            node = pool.nodes.get(row.category_id) if row.category_id is not None else None
            out.append(ReviewNeighbour(pid, row.text, row.label, node.code if node else None, float(sim)))
        return out

    def pair_similarities(self, unsafe_prompt_id: int, safe_prompt_id: int) -> dict[str, float | None]:
        """Cosine similarity of a pair's stored vectors under every registered encoder (None: not embedded)."""
        out: dict[str, float | None] = {}
        for enc in self.encoders.list():
            try:
                vs = self.embeddings.load_vectors(enc.name, prompt_ids=[unsafe_prompt_id, safe_prompt_id])
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
        taxonomy: str = DEFAULT_TAXONOMY,
        level: str | None = None,
        k: int = 10,
        limit: int = 100,
        max_purity: float = 0.5,
    ) -> list[Suspect]:
        """Prompts whose k nearest neighbours mostly carry another label (`by="label"`) or another
        category at `level` of `taxonomy` (`by="category"`): lowest purity first, at most `limit`."""
        from taxonomy_store.metrics.purity import same_share

        if by not in ("label", "category"):
            raise NotFound(f"no suspects view by {by!r}", "use by='label' or by='category'")
        pool = self._nearest.pool(encoder)
        rows, nodes = pool.rows, pool.nodes
        if by == "label":
            groups, names, tag = self._label_groups(pool), list(JUDGED_LABELS), "detect"
        else:
            depth = self._depth(taxonomy, level)
            groups, names = self._category_groups(pool, taxonomy, depth)
            tag = f"members-{taxonomy}-{depth}"
        member = groups >= 0
        if member.sum() < 2:
            return []
        # The graph of the members, from the cache the metric runs share (by label: the detection graph).
        ids, g = self._nearest.pool_graph(pool, tag, member, k)
        groups = groups[member]
        k = min(k, g.idx.shape[1])
        idx, sims = g.idx[:, :k], g.sims[:, :k]
        purity = same_share(idx, groups, k)  # the per-prompt term of CP@k
        ngroups = np.where(idx >= 0, groups[np.maximum(idx, 0)], -1)
        order = np.lexsort((ids, purity))
        out: list[Suspect] = []
        for j in order:
            if len(out) >= limit or not purity[j] <= max_purity:
                break
            majority, _ = Counter(g for g in ngroups[j].tolist() if g >= 0).most_common(1)[0]
            row = rows[int(ids[j])]
            view = _view(row, nodes)
            if by == "label":
                s_label, s_cat = names[majority], None
            else:
                # the most common leaf category among the neighbours in the majority group
                leaves = Counter(
                    rows[int(ids[m])].category_id for m in idx[j] if m >= 0 and groups[m] == majority
                ).most_common(1)[0][0]
                assert leaves is not None  # the majority group is a category: its prompts have one
                s_label, s_cat = None, nodes[leaves].code
            out.append(Suspect(view, float(purity[j]), s_label, s_cat, by, k,
                               [(int(ids[m]), float(s)) for m, s in zip(idx[j], sims[j]) if m >= 0]))
        return out

    @staticmethod
    def _label_groups(pool) -> np.ndarray:
        labels = pool.labels()
        return np.array([JUDGED_LABELS.index(lbl) if lbl in JUDGED_LABELS else -1 for lbl in labels], dtype=np.int64)

    @staticmethod
    def _category_groups(pool, taxonomy: str, depth: int) -> tuple[np.ndarray, list[str]]:
        """Per pool row: its category's ancestor at `depth` in `taxonomy` as a group number (-1: none)."""
        group_of: list[int | None] = []
        for i in pool.prompt_ids:
            row = pool.rows[int(i)]
            node = pool.nodes.get(row.category_id) if row.category_id is not None else None
            group_of.append(node.at_depth(depth) if node is not None and node.taxonomy == taxonomy else None)
        uniq = sorted({g for g in group_of if g is not None})
        pos = {g: n for n, g in enumerate(uniq)}
        groups = np.array([pos[g] if g is not None else -1 for g in group_of], dtype=np.int64)
        return groups, [pool.nodes[g].code for g in uniq]

    def label_issues(self, encoder: str, *, limit: int = 100) -> list["LabelIssue"]:
        """Prompts whose stored safe/unsafe label confident learning doubts (see `label_issues`):
        out-of-sample probabilities of a logistic probe on the stored vectors, pair sides kept in
        one fold; least self-confident first. `twin_pair` names a pair the prompt is a side of."""
        from taxonomy_store.guard.grouped_cv import pair_groups
        from taxonomy_store.curation.label_issues import confident_issues, out_of_sample_probabilities

        pool = self._nearest.pool(encoder)
        rows, nodes = pool.rows, pool.nodes
        y = self._label_groups(pool)
        keep = y >= 0
        ids, x, y = pool.prompt_ids[keep], pool.vectors[keep], y[keep]
        if len(ids) < 4 or len(set(y.tolist())) < 2:
            return []
        twins: dict[int, int] = {}
        joined: list[tuple[int, int]] = []
        for pair_id, unsafe_id, safe_id in self._live_pairs():
            joined.append((unsafe_id, safe_id))
            twins.setdefault(unsafe_id, pair_id)
            twins.setdefault(safe_id, pair_id)
        probs = out_of_sample_probabilities(x, y, pair_groups(ids, joined))
        out = []
        issues = confident_issues(probs, y)
        step = max(2 * limit, 50)  # neighbours only for as many issues as the list needs
        for start in range(0, len(issues), step):
            chunk = issues[start:start + step]
            agree = self._neighbours_back(encoder, [int(ids[i.row]) for i in chunk], [JUDGED_LABELS[i.suggested] for i in chunk])
            for issue, backed in zip(chunk, agree):
                if not backed:
                    continue  # the probe suggests a label none of the nearest neighbours shown carries: nothing to take
                pid = int(ids[issue.row])
                out.append(LabelIssue(_view(rows[pid], nodes), issue.p_given, JUDGED_LABELS[issue.suggested],
                                      issue.p_suggested, twins.get(pid)))
                if len(out) >= limit:
                    return out
        return out

    def _neighbours_back(self, encoder: str, prompt_ids: list[int], suggested: list[str], k: int = 5) -> list[bool]:
        """For each prompt, whether one of its k nearest stored prompts (those the Suspects screen shows) carries the suggestion."""
        if not prompt_ids:
            return []
        pool = self._nearest.pool(encoder)
        hits = self._nearest.of_stored(encoder, prompt_ids, k)
        return [any(pool.rows[n].label == label for n, _sim in near) for near, label in zip(hits, suggested)]

    def _live_pairs(self) -> list[tuple[int, int, int]]:
        """(pair id, unsafe prompt id, safe prompt id) of every pair not rejected."""
        from sqlalchemy import select

        from taxonomy_store.db.models import Pair

        with self.db.session() as s:
            rows = s.execute(select(Pair.id, Pair.unsafe_prompt_id, Pair.safe_prompt_id).where(Pair.status != "rejected"))
            return [(int(a), int(b), int(c)) for a, b, c in rows]

    def _depth(self, taxonomy: str, level: str | None) -> int:
        levels = next((t["levels"] for t in self.taxonomies.list() if t["name"] == taxonomy), None)
        if levels is None:
            self.taxonomies.tree(taxonomy)  # raises UnknownTaxonomy with its hint
            levels = []
        return depth_of_level(taxonomy, levels, level if level is not None else choose_level(levels) if levels else 0)

    # -- metric tables -------------------------------------------------------------------
    def _levels(self, taxonomy: str) -> list[str]:
        return next((list(t["levels"] or []) for t in self.taxonomies.list() if t["name"] == taxonomy), [])

    def default_level(self, taxonomy: str) -> str:
        return choose_level(self._levels(taxonomy))

    def category_scores(self, encoder: str, *, taxonomy: str, k: int = DEFAULT_K) -> dict[str, float]:
        """CP@k per category code from the encoder's newest CP runs on this taxonomy (every level run)."""
        out: dict[str, float] = {}
        for r in self.metric_runs.latest():
            p = r.params
            if r.metric == "cp" and r.encoder == encoder and p.get("taxonomy") == taxonomy and p.get("k") == k:
                for code, d in (r.details.get("per_category") or {}).items():
                    if d.get("cp") is not None:
                        out[code] = float(d["cp"])
        return out

    def metrics_overview(self, *, taxonomy: str = DEFAULT_TAXONOMY, level: str | None = None, k: int = DEFAULT_K) -> "MetricsOverview":
        """The newest runs arranged as tables: primary values, separation per pair type and CP per
        category (rows) × encoder (columns), with the stale (row, encoder) cells."""
        level = level or self.default_level(taxonomy)
        infos = self.encoders.list()
        bases = {e.name: e.adapted_from for e in infos if e.adapted_from}
        encoders = beside_their_bases([e.name for e in infos], bases)
        from taxonomy_store.measurement.runs import run_key

        history = self.metric_runs.history()
        before: dict[tuple, Any] = {}  # run key -> the run before the newest one of that key
        newest: dict[tuple, Any] = {}
        for r in history:
            key = run_key(r)
            if key in newest:
                before[key] = newest[key]
            newest[key] = r
        latest = sorted(newest.values(), key=lambda r: r.id or 0)
        stale_ids = {r.id for r in self.metric_runs.stale()}
        ov = MetricsOverview(taxonomy=taxonomy, level=level, k=k, data_revision=self.db.data_revision(),
                             encoders=encoders, runs=len(latest), bases=bases)
        sep_sets = sorted({r.params.get("pair_set") or "" for r in latest if r.metric == "separation"})

        def put(row: str, name: str, r, value, *, lower_is_better: bool = False, lo: float = 0.0, hi: float = 1.0) -> None:
            ov.primary.setdefault(row, {})[r.encoder] = value
            ov.primary_names[row] = name
            prev = before.get(run_key(r))
            if prev is not None and prev.primary_value is not None and value is not None:
                ov.previous.setdefault(row, {})[r.encoder] = prev.values.get(f"detect_auroc@{k}", prev.primary_value) \
                    if r.metric == "detect" else prev.primary_value
            ov.ranges[row] = (lo, hi)
            if lower_is_better:
                ov.lower_is_better.add(row)
            if r.id in stale_ids:
                ov.stale.add((row, r.encoder))

        for r in latest:
            t = r.details.get("trained_on")
            if t and r.encoder in bases:
                ov.trained_on[r.encoder] = ("held out (trained on none of these prompts)" if t.get("held_out") else
                                            f"trained on {t['prompts']} of {t['of']} prompts (not held out)")
        for r in latest:
            p = r.params
            if r.metric == "cp" and p.get("taxonomy") == taxonomy and str(p.get("level")) == level and p.get("k") == k:
                put("cp", f"CP@{k} macro ({level})", r, r.primary_value)
                for code, d in (r.details.get("per_category") or {}).items():
                    ov.cp.setdefault(code, {})[r.encoder] = d.get("cp")
                    ov.category_names[code] = d.get("name") or code
                    ov.category_sizes[code] = int(d.get("prompts") or 0)
            elif r.metric == "detect" and p.get("k") == k:
                put("detect", f"detection AUROC (kNN, k={k})", r, r.values.get(f"detect_auroc@{k}", r.primary_value), lo=0.5)
            elif r.metric == "separation":
                name = p.get("pair_set") or ""
                row = "separation" if len(sep_sets) <= 1 else f"separation:{name}"
                put(row, f"separation, normalised ({name})", r, r.primary_value, lower_is_better=True)
                ov.baselines[r.encoder] = baseline_words(r.details)
                for t, d in (r.details.get("per_type") or {}).items():
                    trow = t if len(sep_sets) <= 1 else f"{name} · {t}"
                    ov.separation.setdefault(trow, {})[r.encoder] = d.get("norm")
            elif r.metric == "contrast":
                name = p.get("pair_set") or ""
                put(f"contrast:{name}", f"contrast boundary, max normalised ({name})", r, r.primary_value, lower_is_better=True)
        ov.ranges["separation"] = ov.ranges.get("separation", (0.0, 1.0))
        ov.cp = dict(sorted(ov.cp.items()))
        ov.separation = dict(sorted(ov.separation.items()))
        return ov

    def evaluations(self, encoder: str | None = None) -> list["EvaluationView"]:
        """The newest held-out evaluation of each kind (`tstore evaluate`), newest first, for the metrics screen:
        per held-out dataset the verdict shares and recall / flagged rate, beside the calibration's
        grouped-CV and in-sample AUROC; `stale` when the data changed since."""
        stale_ids = {r.id for r in self.metric_runs.stale()}
        out = []
        for r in self.metric_runs.latest():
            if r.metric != "evaluate" or (encoder and r.encoder != encoder):
                continue
            p = r.params
            if p.get("by_dataset"):
                what = "each labeled dataset in turn"
            else:
                what = ", ".join(p.get("holdout") or [])
                if p.get("fraction") is not None:
                    what = f"{p['fraction']:g} of {what} (seed {p.get('seed')})"
            splits = [
                EvaluationSplit(
                    held_out=list(sp["held_out"]), prompts=int(sp["prompts"]), scorer=sp["scorer"], auroc=sp.get("auroc"),
                    cv_auroc=sp.get("cv_auroc"), in_sample_auroc=sp.get("in_sample_auroc"), datasets=dict(sp["datasets"]),
                    warnings=list(sp.get("warnings") or []),
                )
                for sp in r.details.get("splits", [])
            ]
            out.append(EvaluationView(run_id=r.id, encoder=r.encoder, held_out=what, primary_name=r.primary_name,
                                      primary_value=r.primary_value, splits=splits, stale=r.id in stale_ids,
                                      created_at=r.created_at, data_revision=r.data_revision))
        return sorted(out, key=lambda e: -(e.run_id or 0))


@dataclass
class EvaluationSplit:
    held_out: list[str]
    prompts: int
    scorer: str
    auroc: float | None  # on the held-out prompts (None unless both labels are held out)
    cv_auroc: float | None  # the calibration's grouped cross-validation, without the held-out prompts
    in_sample_auroc: float | None  # leave-one-out (kNN scorers) or the probe's training fit: optimistic
    datasets: dict[str, dict[str, Any]]  # dataset -> n, unsafe, uncertain, safe shares, recall or flagged, category_accuracy
    warnings: list[str] = field(default_factory=list)


@dataclass
class EvaluationView:
    run_id: int | None
    encoder: str
    held_out: str  # in words
    primary_name: str | None
    primary_value: float | None
    splits: list[EvaluationSplit]
    stale: bool
    created_at: str | None
    data_revision: int


def beside_their_bases(names: list[str], bases: dict[str, str]) -> list[str]:
    """names in their order, except that each tuned encoder follows its base (and that base's other
    tuned encoders, oldest first); a tuned encoder whose base is gone keeps its place."""
    children: dict[str, list[str]] = {}
    for n in names:
        if bases.get(n) in names:
            children.setdefault(bases[n], []).append(n)
    out: list[str] = []

    def put(n: str) -> None:
        if n not in out:
            out.append(n)
            for c in children.get(n, []):
                put(c)

    for n in names:
        if bases.get(n) not in names:
            put(n)
    return out + [n for n in names if n not in out]  # a cycle of names reused after a removal


@dataclass
class MetricsOverview:
    taxonomy: str
    level: str
    k: int
    data_revision: int
    encoders: list[str]  # columns: each encoder tuned by `tstore adapt` right after its base
    runs: int
    bases: dict[str, str] = field(default_factory=dict)  # tuned encoder -> the encoder it was tuned from
    primary: dict[str, dict[str, float | None]] = field(default_factory=dict)  # row -> encoder -> value
    primary_names: dict[str, str] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    lower_is_better: set[str] = field(default_factory=set)
    stale: set[tuple[str, str]] = field(default_factory=set)  # (row, encoder)
    separation: dict[str, dict[str, float | None]] = field(default_factory=dict)  # pair type -> encoder -> norm
    cp: dict[str, dict[str, float | None]] = field(default_factory=dict)  # category code -> encoder -> CP@k
    category_names: dict[str, str] = field(default_factory=dict)
    category_sizes: dict[str, int] = field(default_factory=dict)
    # tuned encoder -> what its figures are computed on: "trained on 620 of 620 prompts (not held out)"
    trained_on: dict[str, str] = field(default_factory=dict)
    previous: dict[str, dict[str, float]] = field(default_factory=dict)  # row -> encoder -> the run before's value
    baselines: dict[str, tuple[float, str]] = field(default_factory=dict)  # encoder -> (b the pair figures used, whence)


def baseline_words(details: dict[str, Any]) -> tuple[float, str]:
    """b as a separation run used it, and where it came from in a few words."""
    src = details.get("baseline_source") or {}
    if src.get("source") == "estimated":
        est = src.get("estimate") or {}
        n = len(est.get("sample_ids") or [])
        whence = f"estimated from {n} prompts, " + ("pinned" if src.get("pinned") else "new")
    else:
        whence = str((src.get("provenance") or {}).get("source") or src.get("source") or "set")
    return float(details.get("baseline") or 0.0), whence
