"""From a score to a verdict: unsafe / safe / uncertain, and why.

A score is only trusted near stored prompts: when no labeled stored prompt is within the
calibrated normalised similarity of the query, the verdict is `uncertain` with the reason
"nothing like it is stored" (and the category vote names no harm category).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from taxonomy_store.neighbours.service import Pool
from taxonomy_store.guard.scorers import normalised_similarity, near, scorer_named

if TYPE_CHECKING:
    from taxonomy_store.guard.calibration import Calibration

NOTHING_LIKE_IT = "nothing like it is stored"


def decide(score: float | None, calibration: "Calibration | None", nearest: float | None = None) -> tuple[str, str]:
    """unsafe / safe / uncertain, and why. `nearest`: the query's normalised similarity to its nearest labeled prompt."""
    if calibration is not None and nearest is not None and calibration.ood_similarity is not None:
        if nearest < calibration.ood_similarity:
            return "uncertain", (
                f"{NOTHING_LIKE_IT} (nearest labeled prompt at normalised similarity {nearest:.3f} "
                f"< {calibration.ood_similarity:.3f})"
            )
    if score is None or math.isnan(score):
        return "uncertain", "no labeled neighbours voted"
    if calibration is None:
        return "uncertain", "no calibration for this encoder yet; run `tstore calibrate`"
    t, m = calibration.threshold, calibration.uncertain_within
    if abs(score - t) < m:
        return "uncertain", f"decided by {calibration.scorer}: {score:.3f} is within {m:g} of the threshold {t:.3f}"
    if score >= t:
        return "unsafe", f"decided by {calibration.scorer}: {score:.3f} >= threshold {t:.3f}"
    return "safe", f"decided by {calibration.scorer}: {score:.3f} < threshold {t:.3f}"


def score_vectors(pool: Pool, voters: np.ndarray | None, vectors: np.ndarray, cal: "Calibration",
                  exclude_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores under the calibration's scorer, normalised similarity to the nearest voter) of these vectors.

    voters: a boolean per pool row, the labeled prompts that may vote (None: every labeled prompt)."""
    scores, nearest, _ = score_and_search(pool, voters, vectors, cal, exclude_rows=exclude_rows)
    return scores, nearest


def score_and_search(pool: Pool, voters: np.ndarray | None, vectors: np.ndarray, cal: "Calibration | None", *,
                     k: int = 0, also: tuple[Any, ...] = (), exclude_rows: np.ndarray | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """One search of the pool gives (scores, normalised similarity to the nearest voter, the k
    nearest under each mask of `also`). Not calibrated: the plain kNN share of the k nearest voters,
    so the score still means something."""
    if cal is not None:
        scorer, kv, b = scorer_named(cal.scorer), cal.k, cal.baseline if cal.baseline is not None else 0.0
    else:
        scorer, kv, b = scorer_named("knn-share"), k, 0.0
    found, more = near(pool, vectors, voters, kv, b, exclude_rows=exclude_rows, also=also, search_k=k)
    model = scorer.model_from_dict(cal.probe) if cal is not None and scorer.learns else None
    if scorer.learns and model is None:
        raise ValueError(f"the calibration names the {scorer.name} scorer but holds no fitted model")
    return scorer.score(found, vectors, model), normalised_similarity(found.nearest, b), [(i[:, :k], s[:, :k]) for i, s in more]
