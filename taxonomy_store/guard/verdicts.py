"""From a score to a verdict: unsafe / safe / uncertain, and why.

A score is only trusted near stored prompts: when no labeled stored prompt is within the
calibrated normalised similarity of the query, the verdict is `uncertain` with the reason
"nothing like it is stored" (and the category vote names no harm category).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from taxonomy_store.neighbours.service import Pool
from taxonomy_store.guard.scorers import Probe, normalised_similarity, score_near

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


def score_vectors(pool: Pool, voters: np.ndarray, vectors: np.ndarray, cal: "Calibration",
                  exclude_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores under the calibration's scorer, normalised similarity to the nearest voter) of these vectors.

    voters: a boolean per pool row, the labeled prompts that may vote."""
    b = cal.baseline if cal.baseline is not None else 0.0
    name = "knn-share" if cal.scorer == "probe" else cal.scorer  # the probe still needs the nearest voter
    scores, nearest = score_near(name, pool, vectors, voters, pool.labels() == "unsafe", cal.k, b, exclude_rows)
    if cal.scorer == "probe":
        probe = Probe.from_dict(cal.probe)
        if probe is None:
            raise ValueError("the calibration names the probe but holds no probe")
        scores = probe.score(vectors)
    return scores, normalised_similarity(nearest, b)
