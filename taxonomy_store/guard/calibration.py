"""Calibrating the guard so its figures predict unseen data.

For a reference set of labeled stored prompts (the whole store for `calibrate`, the store minus
the held-out prompts for `evaluate`):
1. grouped cross-validation (`grouped_cv`: folds by dataset, pairs kept together) gives every
   reference prompt an out-of-fold score under each scorer (`scorers`), neighbours from the
   exact neighbour service restricted to the training folds;
2. the scorer with the best out-of-fold AUROC decides (or the one asked for), and its
   threshold is chosen on the out-of-fold scores (best F1, or the highest recall within a
   target false-positive rate);
3. the in-sample figure (leave-one-out for kNN scorers, the training fit for the probe) is
   kept beside it, so the difference is visible;
4. "nothing like it is stored": the normalised similarity that OOD_COVERAGE of the reference
   prompts reach to their nearest prompt outside their own pair group; a query that reaches no
   stored prompt that closely gets no unsafe/safe verdict.

An encoder tuned on the store (`tstore adapt`) has seen the prompts the folds hold out, so
out-of-fold figures over all of them measure memory. For such an encoder the figures, the
scorer's choice, the threshold and the "nothing like it" level come from the prompts it never
trained on (its record in the model folder), at least MIN_NEVER_TRAINED of each label; with
fewer, the figures over every prompt are kept but marked `contaminated`, with a warning, and
are never called held out. `held_out_basis` says which it is.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from taxonomy_store.backend.training_manifest import trained_on
from taxonomy_store.guard.grouped_cv import dataset_folds, pair_groups
from taxonomy_store.metrics.baseline import estimate_baseline
from taxonomy_store.metrics.detection import auroc, best_f1
from taxonomy_store.neighbours.service import Neighbours, Pool
from taxonomy_store.guard.scorers import SCORERS, normalised_similarity, near, scorer_named
from taxonomy_store.vocabulary import JUDGED_LABELS

DEFAULT_MARGIN = 0.05  # the uncertain band: this share of the scorer's score spread, either side of the threshold
OOD_COVERAGE = 0.95  # share of stored prompts that count as "like something stored"
SMALL_SAFE_SHARE = 0.20
SMALL_SAFE_COUNT = 500
MIN_NEVER_TRAINED = 20  # of each label: fewer never-trained prompts give an adapted encoder no held-out figure
# Large references: a seeded sample of QUERY_SAMPLE reference prompts (stratified by label) is scored out of
# fold, against every prompt of the other folds as voters; a learning scorer fits on at most FIT_SAMPLE of
# its training rows (seeded). A held-out score never comes from a fit that saw its prompt.
QUERY_SAMPLE = 20_000
FIT_SAMPLE = 50_000
SAMPLE_SEED = 0


def balanced_threshold(scores: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The threshold with the best balanced accuracy (Youden's J = recall - FPR); among equals the highest.

    The store's mix of safe and unsafe prompts is not the traffic's: weighing both error rates
    equally keeps the threshold from following whichever label the store happens to hold more of."""
    scores, y = np.asarray(scores, dtype=np.float64), np.asarray(y, dtype=bool)
    P, N = int(y.sum()), int((~y).sum())
    order = np.argsort(-scores, kind="mergesort")
    s, t = scores[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s) != 0), s.size - 1]
    tp, fp = np.cumsum(t)[last], np.cumsum(~t)[last]
    j = tp / max(P, 1) - fp / max(N, 1)
    i = int(np.argmax(j))
    tp_i, fp_i = int(tp[i]), int(fp[i])
    precision = tp_i / (tp_i + fp_i) if tp_i + fp_i else 0.0
    recall = tp_i / P if P else 0.0
    return {
        "threshold": float(s[last[i]]), "precision": precision, "recall": recall, "fpr": fp_i / N if N else 0.0,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "tp": tp_i, "fp": fp_i, "fn": P - tp_i, "tn": N - fp_i,
    }


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


@dataclass
class Calibration:
    encoder: str
    threshold: float
    margin: float  # as asked: a share of the deciding scorer's score spread
    k: int
    objective: str  # "max_f1" | "target_fpr"
    target_fpr: float | None
    precision: float  # these four: out of fold, at the threshold
    recall: float
    fpr: float
    f1: float
    auroc: float  # grouped cross-validation AUROC of the deciding scorer
    n_safe: int
    n_unsafe: int
    n_reference: int
    data_revision: int
    fingerprint: str | None
    computed_at: str
    score: str = "knn-share"  # the deciding scorer
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    in_sample_auroc: float | None = None  # leave-one-out (kNN) or training fit (probe): optimistic
    scorers: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"cv_auroc", "in_sample_auroc"}
    folds: list[str] = field(default_factory=list)
    baseline: float | None = None
    ood_similarity: float | None = None  # normalised; below it: "nothing like it is stored"
    probe: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    forced: bool = False
    # the uncertain band in score units: margin x the 5th-95th percentile spread of the deciding
    # scorer's out-of-fold scores, so it means the same for every scorer (None: stored before, band = margin)
    band: float | None = None
    # What the figures above (auroc, precision, recall, fpr, f1, the scorers' cv_auroc) are computed on.
    # None: stored before this was recorded.
    held_out_basis: str | None = None  # "grouped cross-validation (n=...)", "never-trained prompts (n=...)", "none: ..."
    contaminated: bool | None = None  # True: they include prompts the encoder was trained on (not held out)
    trained_on: int | None = None  # reference prompts the encoder was trained on (0: none, a base encoder)
    never_trained: int | None = None  # reference prompts it never trained on
    all_folds_auroc: float | None = None  # tuned encoders: grouped-CV AUROC over every prompt, trained-on included
    # How the folds' neighbours were found: {"exact": True}, or {"exact": False, "index": parameters and recall}.
    neighbour_search: dict[str, Any] = field(default_factory=lambda: {"exact": True})
    # None: every reference prompt scored; else {"queries", "of", "seed", "fit_rows_max", "how"}
    sampled: dict[str, Any] | None = None

    @property
    def uncertain_within(self) -> float:
        return self.margin if self.band is None else self.band

    @property
    def scorer(self) -> str:
        return self.score

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Calibration | None":
        if not d or "threshold" not in d:
            return None
        names = cls.__dataclass_fields__
        out = cls(**{k: v for k, v in d.items() if k in names})
        if out.score not in SCORERS:  # calibrations stored before scorers had names
            out.score = "knn-share"
        return out


@dataclass
class Reference:
    """The labeled prompts a calibration learns from: pool rows, labels, groups, folds."""

    pool: Pool
    rows: np.ndarray  # pool row numbers
    is_unsafe: np.ndarray
    groups: np.ndarray
    trained: np.ndarray | None = None  # per reference row: the encoder was trained on it (None: a base encoder)
    trained_recorded: bool = True  # False: adapted without a record, every prompt counted as trained on

    @property
    def mask(self) -> np.ndarray:
        m = np.zeros(len(self.pool), dtype=bool)
        m[self.rows] = True
        return m

    @classmethod
    def of(cls, pool: Pool, mask: np.ndarray) -> "Reference":
        labels = pool.labels()
        rows = np.flatnonzero(mask & np.isin(labels, JUDGED_LABELS))
        groups = pair_groups(pool.prompt_ids[rows], pool.links)
        seen = trained_on(pool.info, [pool.rows[int(p)].text_sha256 for p in pool.prompt_ids[rows]])
        return cls(pool=pool, rows=rows, is_unsafe=labels[rows] == "unsafe", groups=groups,
                   trained=None if seen is None else seen.mask, trained_recorded=seen is None or seen.recorded)


def encoder_baseline(pool: Pool) -> float:
    """The encoder's registered baseline b, else an estimate from its stored vectors (seeded)."""
    if pool.info.baseline is not None:
        return float(pool.info.baseline)
    return float(estimate_baseline(pool.vectors, pool.labels().astype(str), sample=500, seed=0)["baseline"])


def query_sample(ref: Reference, size: int = QUERY_SAMPLE) -> np.ndarray:
    """The reference rows scored (a boolean per reference row): all of them, or a seeded sample of
    `size` stratified by label when there are more."""
    n = len(ref.rows)
    if n <= size:
        return np.ones(n, dtype=bool)
    rng = np.random.default_rng(SAMPLE_SEED)
    out = np.zeros(n, dtype=bool)
    for lab in (True, False):
        rows = np.flatnonzero(ref.is_unsafe == lab)
        take = max(1, round(size * len(rows) / n)) if len(rows) else 0
        out[rng.choice(rows, size=min(take, len(rows)), replace=False)] = True
    return out


def fit_rows(rows: np.ndarray, size: int = FIT_SAMPLE) -> np.ndarray:
    """Rows (a boolean mask) a learning scorer fits on: all of them, or a seeded sample of `size`."""
    picked = np.flatnonzero(rows)
    if len(picked) <= size:
        return rows
    out = np.zeros_like(rows)
    out[np.random.default_rng(SAMPLE_SEED).choice(picked, size=size, replace=False)] = True
    return out


def scores_for(names: tuple[str, ...], ref: Reference, train: np.ndarray, query: np.ndarray, k: int, b: float,
               models: dict[str, Any] | None = None, exclude: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Scores of pool rows `query` under each named scorer, learning from the reference rows `train`
    (a boolean per reference row); the kNN scorers share one search of the pool."""
    pool = ref.pool
    scorers = [scorer_named(n) for n in names]
    vectors = pool.vectors[query]
    found = None
    if any(s.reads_neighbours for s in scorers):
        mask = np.zeros(len(pool), dtype=bool)
        mask[ref.rows[train]] = True
        unsafe_of_row = np.zeros(len(pool), dtype=bool)
        unsafe_of_row[ref.rows] = ref.is_unsafe
        found, _ = near(pool, vectors, mask, k, b, is_unsafe=unsafe_of_row, exclude_rows=exclude)
    out = {}
    for s in scorers:
        model = (models or {}).get(s.name)
        if s.learns and model is None:
            some = fit_rows(train)
            model = s.fit(pool.vectors[ref.rows[some]], ref.is_unsafe[some])
        out[s.name] = s.score(found, vectors, model)  # type: ignore[arg-type]  # found is set for the scorers that read it
    return out


def out_of_fold(ref: Reference, k: int, b: float, names: tuple[str, ...], sample: np.ndarray | None = None
                ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every (sampled) reference prompt's score from a scorer that never saw its fold: (name -> scores,
    NaN for prompts not sampled; fold names)."""
    datasets = [ref.pool.rows[int(ref.pool.prompt_ids[r])].dataset or "" for r in ref.rows]
    folds = dataset_folds(datasets, ref.groups, ref.is_unsafe)
    out = {n: np.full(len(ref.rows), np.nan) for n in names}
    for f in range(folds.count):
        test = folds.fold == f
        train = ~test
        query = test if sample is None else test & sample
        if not query.any() or ref.is_unsafe[train].all() or not ref.is_unsafe[train].any():
            continue
        for n, scores in scores_for(names, ref, train, ref.rows[query], k, b).items():
            out[n][query] = scores
    return out, folds.names


def in_sample(name: str, ref: Reference, k: int, b: float, model: Any, sample: np.ndarray | None = None) -> np.ndarray:
    """Leave-one-out scores (kNN scorers: a prompt never votes for itself) or a learning scorer's training fit,
    of the sampled reference rows (all by default)."""
    everyone = np.ones(len(ref.rows), dtype=bool)
    rows = ref.rows if sample is None else ref.rows[sample]
    return scores_for((name,), ref, everyone, rows, k, b, models={name: model}, exclude=rows)[name]


def score_band(scores: np.ndarray, margin: float) -> float:
    """The uncertain band in score units: margin x the spread (5th to 95th percentile) of these scores."""
    lo, hi = np.quantile(np.asarray(scores, dtype=np.float64), [0.05, 0.95])
    return float(margin) * float(hi - lo)


def ood_similarity(ref: Reference, b: float, coverage: float = OOD_COVERAGE, among: np.ndarray | None = None) -> float:
    """Normalised similarity that `coverage` of the reference prompts (those `among` marks, default all) reach
    to their nearest prompt outside their pair group."""
    pool, m = ref.pool, ref.mask
    some = np.ones(len(ref.rows), dtype=bool) if among is None else np.asarray(among, dtype=bool)
    rows = ref.rows[some]
    idx, sims = Neighbours.nearest(pool, pool.vectors[rows], 8, mask=m, exclude_rows=rows)
    group_of = np.full(len(pool), -1, dtype=np.int64)
    group_of[ref.rows] = ref.groups
    same = (idx >= 0) & (group_of[np.maximum(idx, 0)] == ref.groups[some][:, None])
    sims = np.where(same | (idx < 0), -np.inf, sims)
    nearest = normalised_similarity(np.max(sims, axis=1), b)
    return float(np.quantile(nearest, 1.0 - coverage))


@dataclass
class Basis:
    """The reference prompts the calibration's figures are computed on, and what to call them."""

    rows: np.ndarray  # per reference row
    text: str
    contaminated: bool
    trained_on: int
    never_trained: int
    warning: str | None = None


def figure_basis(ref: Reference, encoder: str) -> Basis:
    """Every prompt for a base encoder; for a tuned one only those it never trained on, or, with too few of
    them, every prompt marked contaminated (with a warning that says how to get a held-out figure)."""
    n = len(ref.rows)
    if ref.trained is None or not ref.trained.any():
        return Basis(np.ones(n, dtype=bool), f"grouped cross-validation (n={n})", False, 0, n)
    fresh = ~ref.trained
    n_unsafe, n_safe, trained = int((fresh & ref.is_unsafe).sum()), int((fresh & ~ref.is_unsafe).sum()), int(ref.trained.sum())
    if min(n_unsafe, n_safe) >= MIN_NEVER_TRAINED:
        text = f"never-trained prompts (n={n_unsafe + n_safe}: {n_unsafe} unsafe, {n_safe} safe; trained on {trained})"
        return Basis(fresh, text, False, trained, n_unsafe + n_safe)
    how = ("it was adapted before tstore recorded training prompts, so every prompt counts as trained on"
           if not ref.trained_recorded else
           f"it was trained on {trained} of these {n} prompts; {n_unsafe} unsafe + {n_safe} safe never-trained, "
           f"fewer than {MIN_NEVER_TRAINED} of each")
    warning = (f"no held-out figure for {encoder}: {how}. The grouped-CV figures below measure memory, not new traffic; "
               "adapt with --holdout-fraction, import labeled prompts it never saw, or `tstore evaluate --holdout` "
               "a dataset the adaptation left out")
    return Basis(np.ones(n, dtype=bool), f"none: {how}", True, trained, n_unsafe + n_safe, warning)


def class_warnings(ref: Reference) -> list[str]:
    """Warnings when the safe class cannot teach the guard much about everyday traffic."""
    n_safe, n = int((~ref.is_unsafe).sum()), len(ref.is_unsafe)
    out = []
    if n_safe < SMALL_SAFE_COUNT or n_safe < SMALL_SAFE_SHARE * n:
        out.append(
            f"the safe class is small ({n_safe} of {n} labeled prompts): verdicts on ordinary traffic will be unreliable; "
            "import everyday safe prompts (user instructions, support questions) labeled safe"
        )
    safe_sets = {ref.pool.rows[int(ref.pool.prompt_ids[r])].dataset for r in ref.rows[~ref.is_unsafe]}
    if len(safe_sets) == 1:
        (only,) = safe_sets
        out.append(
            f"every safe prompt comes from one dataset ({only}): the held-out figures cannot test safe data from elsewhere; "
            "import safe prompts of another kind (everyday instructions, another benchmark's benign set)"
        )
    return out


OBJECTIVES = ("balanced", "max_f1", "target_fpr")


def fit(ref: Reference, *, encoder: str, k: int, margin: float, target_fpr: float | None,
        scorer: str | None, data_revision: int, objective: str = "balanced") -> Calibration:
    """Choose the scorer and threshold on grouped cross-validation; keep the in-sample figure beside it.

    For an encoder tuned on the store, on the out-of-fold scores of the prompts it never trained on."""
    b = encoder_baseline(ref.pool)
    names = tuple(SCORERS) if scorer is None else (scorer,)
    sample = query_sample(ref)
    oof, fold_names = out_of_fold(ref, k, b, names, sample)
    y = ref.is_unsafe
    basis = figure_basis(ref, encoder)

    def on(n: str, rows: np.ndarray) -> np.ndarray:
        return rows & ~np.isnan(oof[n])

    cv = {n: auroc(oof[n][on(n, basis.rows)], y[on(n, basis.rows)]) for n in names}
    chosen = scorer or max(names, key=lambda n: (np.nan_to_num(cv[n], nan=-1.0), -names.index(n)))
    ok = on(chosen, basis.rows)
    if target_fpr is not None:
        objective = "target_fpr"
        pick = threshold_at_fpr(oof[chosen][ok], y[ok], target_fpr)
    else:
        pick = (best_f1 if objective == "max_f1" else balanced_threshold)(oof[chosen][ok], y[ok])
    deciding = scorer_named(chosen)
    fit_on = fit_rows(np.ones(len(y), dtype=bool))
    model = deciding.fit(ref.pool.vectors[ref.rows[fit_on]], y[fit_on]) if deciding.learns else None
    loo = auroc(in_sample(chosen, ref, k, b, model, sample), y[sample])
    warnings = ([basis.warning] if basis.warning else []) + class_warnings(ref)
    every = on(chosen, np.ones(len(y), dtype=bool))
    return Calibration(
        encoder=encoder, threshold=float(pick["threshold"]), margin=float(margin), k=int(k),
        objective=objective, target_fpr=target_fpr,
        precision=pick["precision"], recall=pick["recall"], fpr=pick["fpr"], f1=pick["f1"], auroc=float(cv[chosen]),
        n_safe=int((~y).sum()), n_unsafe=int(y.sum()), n_reference=int(len(y)), data_revision=int(data_revision),
        fingerprint=ref.pool.info.fingerprint, computed_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        score=chosen, tp=int(pick["tp"]), fp=int(pick["fp"]), fn=int(pick["fn"]), tn=int(pick["tn"]),
        in_sample_auroc=float(loo), scorers={n: {"cv_auroc": float(cv[n])} for n in names}, folds=fold_names,
        baseline=b, ood_similarity=ood_similarity(ref, b, among=None if (basis.rows & sample).all() else basis.rows & sample),
        probe=model.to_dict() if model is not None else None,
        warnings=warnings, forced=scorer is not None, band=score_band(oof[chosen][ok], margin),
        held_out_basis=basis.text, contaminated=basis.contaminated, trained_on=basis.trained_on,
        never_trained=basis.never_trained,
        all_folds_auroc=float(auroc(oof[chosen][every], y[every])) if basis.trained_on else None,
        sampled=None if sample.all() else {
            "queries": int(sample.sum()), "of": int(len(y)), "seed": SAMPLE_SEED, "fit_rows_max": FIT_SAMPLE,
            "how": "a seeded sample stratified by label scored out of fold against every prompt of the other folds"},
    )
