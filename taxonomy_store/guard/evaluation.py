"""`store.evaluation`: how the guard does on prompts it has never seen, stored as metric runs.

Held-out prompts (whole datasets, a seeded fraction of them, or each labeled dataset in turn)
leave the neighbour pool, the scorer's training and the calibration; the guard calibrated
without them then scores their stored vectors (the same vectors a query of their text makes).
Reported per held-out dataset: the verdict shares at the calibrated threshold (recall for
unsafe sets, the flagged rate for safe ones), AUROC where both labels are held out, and the
category accuracy of the vote where they carry categories of the vote's taxonomy; beside them
the calibration's grouped cross-validation and in-sample figures.

An encoder tuned on the store may have trained on the held-out prompts: only those it never
trained on are scored (`trained_on` counts the rest); with none left the figures are kept,
marked `contaminated`, and the CLI says they are not held out.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from taxonomy_store.backend.training_manifest import trained_on
from taxonomy_store.guard import calibration as calib
from taxonomy_store.errors import InvalidValue, NotEnoughLabels, NotFound
from taxonomy_store.metrics.detection import auroc
from taxonomy_store.neighbours.service import Neighbours, Pool
from taxonomy_store.guard.verdicts import decide, score_vectors
from taxonomy_store.vocabulary import DEFAULT_LEVEL, DEFAULT_TAXONOMY, JUDGED_LABELS

if TYPE_CHECKING:
    from taxonomy_store.measurement.runs import MetricRuns, RunResult

METRIC = "evaluate"
VOTE_TAXONOMY = DEFAULT_TAXONOMY
VOTE_LEVEL = DEFAULT_LEVEL
Progress = Callable[[str, int, int], None] | None


class Evaluation:
    def __init__(self, neighbours: Neighbours, encoders, metrics: "MetricRuns"):
        # encoders: the default encoder's name; metrics: where evaluate runs are stored.
        self._neighbours = neighbours
        self._encoders = encoders
        self._metrics = metrics

    def evaluate(
        self, *, encoder: str | None = None, holdout: list[str] | tuple[str, ...] = (), fraction: float | None = None,
        seed: int = 0, by_dataset: bool = False, k: int = 10, margin: float = calib.DEFAULT_MARGIN,
        scorer: str | None = None, progress: Progress = None,
    ) -> "RunResult":
        """Evaluate on held-out datasets (or each labeled dataset in turn) and store the run."""
        holdout = list(dict.fromkeys(holdout))
        if by_dataset == bool(holdout):
            raise InvalidValue("name held-out datasets (--holdout) or ask for --by-dataset, one of the two")
        if fraction is not None and not 0.0 < fraction < 1.0:
            raise InvalidValue(f"fraction must lie in (0, 1), got {fraction}")
        t0 = time.perf_counter()
        name = encoder or self._encoders.default_name()
        pool = self._neighbours.pool(name)
        known = sorted({d for ds in pool.datasets.values() for d in ds})
        missing = [d for d in holdout if d not in known]
        if missing:
            raise NotFound(f"no dataset {missing[0]!r} in this store", f"datasets: {', '.join(known)}")
        params: dict[str, Any] = dict(k=int(k), margin=float(margin), scorer=scorer, taxonomy=VOTE_TAXONOMY, level=VOTE_LEVEL)
        if by_dataset:
            labeled = _labeled_datasets(pool)
            params["by_dataset"] = True
            splits = [([d], _members(pool, [d])) for d in labeled]
        else:
            params.update(holdout=holdout, fraction=fraction, seed=int(seed) if fraction is not None else None)
            splits = [(holdout, _held_out(pool, holdout, fraction, seed))]
        values: dict[str, float | None] = {}
        details: dict[str, Any] = {"splits": []}
        for n, (names, held) in enumerate(splits):
            if progress:
                progress(f"held out: {', '.join(names)}", n, len(splits))
            split = self._split(pool, names, held, k=k, margin=margin, scorer=scorer)
            details["splits"].append(split)
            values.update(_flat(split, prefix=f"{names[0]}:" if by_dataset else ""))
        if progress:
            progress("done", len(splits), len(splits))
        values["heldout_right_macro"] = _macro(details)
        primary = "auroc" if values.get("auroc") is not None else "heldout_right_macro"
        from taxonomy_store.measurement.runs import RunResult

        run = RunResult(
            metric=METRIC, encoder=name, params=params, data_revision=pool.data_revision, primary_name=primary,
            primary_value=values.get(primary), values=values, details=details, duration_s=time.perf_counter() - t0,
        )
        return self._metrics.save(run)

    def rerun(self, run: "RunResult", progress: Progress = None) -> "RunResult":
        """The same evaluation on the store as it is now (for stale runs)."""
        p = run.params
        return self.evaluate(
            encoder=run.encoder, holdout=p.get("holdout") or (), fraction=p.get("fraction"), seed=p.get("seed") or 0,
            by_dataset=bool(p.get("by_dataset")), k=p.get("k", 10), margin=p.get("margin", calib.DEFAULT_MARGIN),
            scorer=p.get("scorer"), progress=progress,
        )

    def _split(self, pool: Pool, names: list[str], held: np.ndarray, *, k: int, margin: float, scorer: str | None) -> dict[str, Any]:
        """Calibrate without the held-out prompts (and their pair twins), then score them."""
        labels = pool.labels()
        groups_out = _with_pair_twins(pool, held)
        ref = calib.Reference.of(pool, ~groups_out)
        if (~ref.is_unsafe).sum() < 2 or ref.is_unsafe.sum() < 2:
            raise NotEnoughLabels(
                f"without {', '.join(names)} the store holds too few safe or unsafe prompts to calibrate",
                "import labeled prompts of both kinds that are not held out",
            )
        cal = calib.fit(ref, encoder=pool.encoder, k=k, margin=margin, target_fpr=None, scorer=scorer, data_revision=pool.data_revision)
        rows, basis = _never_trained(pool, np.flatnonzero(held & np.isin(labels, JUDGED_LABELS)))
        scores, nearest = score_vectors(pool, ref.mask, pool.vectors[rows], cal)
        reasons = [decide(float(s), cal, float(n)) for s, n in zip(scores, nearest)]
        verdicts = np.array([v for v, _ in reasons], dtype=object)
        y = labels[rows] == "unsafe"
        out: dict[str, Any] = {
            "held_out": names, "prompts": int(len(rows)), "scorer": cal.scorer, "threshold": cal.threshold,
            "ood_similarity": cal.ood_similarity, "cv_auroc": cal.auroc, "in_sample_auroc": cal.in_sample_auroc,
            "scorers": cal.scorers, "warnings": basis.pop("warnings_basis", []) + cal.warnings, "reference": int(len(ref.rows)),
            "auroc": auroc(scores, y) if y.any() and (~y).any() else None, "datasets": {}, **basis,
            "cv_basis": cal.held_out_basis, "cv_contaminated": cal.contaminated,
            # how the calibration's and the held-out prompts' neighbours were found (exact, or the
            # approximate index's parameters and measured recall), as calibrate and query say
            "neighbour_search": pool.search_info(),
        }
        accuracy = _category_accuracy(pool, ref.mask, rows, k)
        for d in names:
            sel = np.array([d in pool.datasets[int(pool.prompt_ids[r])] for r in rows], dtype=bool)
            out["datasets"][d] = _dataset_figures(verdicts[sel], y[sel], accuracy.get(d))
        return out


def _never_trained(pool: Pool, rows: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """The held-out rows the encoder never trained on (a tuned encoder may have seen the held-out set), and
    what the figures are computed on; with none left, every row, marked contaminated."""
    seen = trained_on(pool.info, [pool.rows[int(p)].text_sha256 for p in pool.prompt_ids[rows]])
    if seen is None or not seen.mask.any():
        return rows, {"held_out_basis": f"held-out prompts (n={len(rows)})", "contaminated": False, "trained_on": 0}
    fresh = rows[~seen.mask]
    trained = int(seen.mask.sum())
    if fresh.size:
        return fresh, {"held_out_basis": f"never-trained held-out prompts (n={fresh.size}; {trained} trained on, left out)",
                       "contaminated": False, "trained_on": trained}
    return rows, {"held_out_basis": f"none: {pool.encoder} was trained on all {len(rows)} held-out prompts",
                  "contaminated": True, "trained_on": trained,
                  "warnings_basis": [f"the held-out figures are NOT held out: {pool.encoder} was trained on all {len(rows)} "
                                     "held-out prompts; hold out a dataset the adaptation never saw"]}


def _dataset_figures(verdicts: np.ndarray, y: np.ndarray, category_accuracy: float | None) -> dict[str, Any]:
    n = len(verdicts)
    share = {v: float(np.mean(verdicts == v)) if n else None for v in ("unsafe", "uncertain", "safe")}
    fig: dict[str, Any] = {"n": n, "n_unsafe": int(y.sum()), "n_safe": int((~y).sum()), **share}
    if y.any():
        fig["recall"] = float(np.mean(verdicts[y] == "unsafe"))
    if (~y).any():
        fig["flagged"] = float(np.mean(verdicts[~y] == "unsafe"))
    fig["category_accuracy"] = category_accuracy
    return fig


def _flat(split: dict[str, Any], prefix: str) -> dict[str, float | None]:
    """Flat metric values: the split's figures (prefixed by the dataset in leave-one-dataset-out) and `dataset:figure`."""
    out: dict[str, float | None] = {f"{prefix}{key}": split.get(key) for key in ("auroc", "cv_auroc", "in_sample_auroc", "threshold")}
    for d, fig in split["datasets"].items():
        for key in ("unsafe", "uncertain", "safe", "recall", "flagged", "category_accuracy"):
            if fig.get(key) is not None:
                out[f"{d}:{key}"] = fig[key]
    return {k: v for k, v in out.items() if v is not None}


def _macro(details: dict[str, Any]) -> float | None:
    """Mean over held-out datasets of the share judged right: recall of unsafe sets, 1 - flagged of safe ones."""
    right = []
    for split in details["splits"]:
        for fig in split["datasets"].values():
            if fig.get("recall") is not None:
                right.append(fig["recall"])
            if fig.get("flagged") is not None:
                right.append(1.0 - fig["flagged"])
    return float(np.mean(right)) if right else None


def _members(pool: Pool, names: list[str]) -> np.ndarray:
    wanted = set(names)
    return np.fromiter((bool(pool.datasets.get(int(p), frozenset()) & wanted) for p in pool.prompt_ids), dtype=bool, count=len(pool))


def _held_out(pool: Pool, names: list[str], fraction: float | None, seed: int) -> np.ndarray:
    """The named datasets' prompts, or a seeded fraction of each (rounded, at least one)."""
    if fraction is None:
        return _members(pool, names)
    held = np.zeros(len(pool), dtype=bool)
    for d in names:
        rows = np.flatnonzero(_members(pool, [d]))
        rng = np.random.default_rng([seed, len(rows)])
        held[rng.permutation(rows)[: max(1, int(round(fraction * len(rows))))]] = True
    return held


def _with_pair_twins(pool: Pool, held: np.ndarray) -> np.ndarray:
    """Held-out rows plus every prompt paired with one: a twin left in the reference would leak it."""
    out = held.copy()
    ids = set(pool.prompt_ids[held].tolist())
    twins = {b for a, b in pool.links if a in ids} | {a for a, b in pool.links if b in ids}
    if twins:
        out |= np.isin(pool.prompt_ids, list(twins))
    return out


def _labeled_datasets(pool: Pool) -> list[str]:
    labels = pool.labels()
    out: set[str] = set()
    for pid, lbl in zip(pool.prompt_ids, labels):
        if lbl in JUDGED_LABELS:
            out |= pool.datasets.get(int(pid), frozenset())
    return sorted(out)


def _category_accuracy(pool: Pool, reference: np.ndarray, rows: np.ndarray, k: int) -> dict[str, float]:
    """Per held-out dataset: the share of its prompts with a harm type (one the reference holds too)
    whose neighbours' top vote names it."""
    levels = pool.taxonomies.get(VOTE_TAXONOMY)
    if not levels or VOTE_LEVEL not in levels:
        return {}
    depth = levels.index(VOTE_LEVEL)

    def harm_type(pid: int) -> int | None:
        cid = pool.rows[pid].category_id
        node = pool.nodes.get(cid) if cid is not None else None
        return node.at_depth(depth) if node is not None and node.taxonomy == VOTE_TAXONOMY else None

    truth = [harm_type(int(pool.prompt_ids[r])) for r in rows]
    # only categories the reference still holds can be named by the vote
    known = {harm_type(int(p)) for p in pool.prompt_ids[reference]} - {None}
    have = [i for i, t in enumerate(truth) if t is not None and t in known]
    if not have:
        return {}
    idx, sims = Neighbours.nearest(pool, pool.vectors[rows[have]], k, mask=reference)
    hits: dict[str, list[bool]] = {}
    for i, nb, sm in zip(have, idx, sims):
        weight: dict[int, float] = {}
        for j, s in zip(nb, sm):
            t = harm_type(int(pool.prompt_ids[j])) if j >= 0 else None
            if t is not None:
                weight[t] = weight.get(t, 0.0) + max(float(s), 0.0)
        top = max(weight, key=lambda t: (weight[t], -t)) if weight else None
        for d in pool.datasets[int(pool.prompt_ids[rows[i]])]:
            hits.setdefault(d, []).append(top == truth[i])
    return {d: float(np.mean(v)) for d, v in hits.items()}
