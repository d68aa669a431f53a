"""The estimated baseline b, pinned: estimated once from a seeded sample of stored prompts and
kept, with that sample, until the curator asks for a new estimate (`tstore metrics baseline`, `B`
on the Metrics screen) or the sample's own data changes (a sampled prompt deleted or its text
edited, so its vector moved).

Without the pin, every recompute drew a new sample (the stratified draw follows the labels), so
editing one prompt's label moved b and with it every normalised pair figure nobody touched.
The pin lives in the runs that used it (details of baseline, separation and contrast runs):
no table of its own, and `tstore metrics history` shows where each b came from.
"""

from __future__ import annotations

import hashlib
from typing import Any, Callable, Iterable

PINNED_METRICS = ("baseline", "separation", "contrast")


def sample_fingerprint(prompt_ids: Iterable[int], text_hash: Callable[[int], str | None]) -> str:
    """sha256 over (prompt id, text hash) of the sampled prompts: it moves when one of them does."""
    h = hashlib.sha256()
    for pid in sorted(int(i) for i in prompt_ids):
        h.update(f"{pid}:{text_hash(pid) or 'gone'}\n".encode())
    return h.hexdigest()


def estimate_of(metric: str, details: dict[str, Any]) -> dict[str, Any] | None:
    """The estimate a stored run carries (a baseline run's own, or the one separation/contrast used)."""
    if metric == "baseline":
        est = details.get("estimate")
    elif metric in ("separation", "contrast"):
        src = details.get("baseline_source") or {}
        est = src.get("estimate") if src.get("source") == "estimated" else None
    else:
        est = None
    return est if isinstance(est, dict) and est.get("sample_fingerprint") else None


def newest_estimate(runs: Iterable[Any]) -> dict[str, Any] | None:
    """The estimate of the newest run that carries one (runs: any order, each with .id, .metric, .details)."""
    best, best_id = None, -1
    for r in runs:
        est = estimate_of(r.metric, r.details or {})
        if est is not None and (r.id or 0) > best_id:
            best, best_id = est, r.id or 0
    return best


def still_holds(estimate: dict[str, Any], text_hash: Callable[[int], str | None]) -> bool:
    """Whether the prompts the estimate was drawn from are unchanged (same ids, same texts)."""
    ids = estimate.get("sample_ids") or []
    return bool(ids) and sample_fingerprint(ids, text_hash) == estimate.get("sample_fingerprint")
