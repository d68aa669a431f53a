"""Crosswalk proposals from neighbours: pure numpy, arrays in, shares and readings out.

Each source prompt distributes one vote over the target categories of its k nearest
target-labeled prompts, weighted by normalised similarity, so every prompt of a source category
counts the same however many near-duplicates the target holds. A source category's *share* of a
target category is the mean of its prompts' votes; *coverage* is the share of its prompts whose
nearest target-labeled prompt lies inside the radius ("like something stored").

The reading (`read_proposal`) depends on those numbers only, not on any taxonomy's names:
- no counterpart: under MIN_COVERAGE of the prompts have a target-labeled neighbour inside the
  radius (distant), or the votes spread thin: no target holds MIN_SHARE and the top three hold
  under SPREAD_SHARE together (weak);
- maps to X: X holds MAPS_SHARE, or MIN_SHARE with no second target at SPLIT_SHARE;
- splits into X and Y (and Z): two or more of the top three hold SPLIT_SHARE each; or, for a
  broad category over a finer target level, no target holds MIN_SHARE but the top three hold
  SPREAD_SHARE together (it names those of them at MIN_PART or more).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_COVERAGE = 0.5
MIN_SHARE = 0.3
SPLIT_SHARE = 0.25
MAPS_SHARE = 0.6
SPREAD_SHARE = 0.4
MIN_PART = 0.1

MAPS_TO, SPLITS_INTO, NO_COUNTERPART = "maps to", "splits into", "no counterpart"


@dataclass
class CrosswalkTally:
    """Per source group (rows) and target category (columns)."""

    share: np.ndarray  # (G, T) mean per-prompt vote share
    mean_similarity: np.ndarray  # (G, T) mean normalised similarity of the neighbours voting for it (nan: none)
    coverage: np.ndarray  # (G,) share of prompts whose nearest target-labeled prompt is inside the radius
    nearest: np.ndarray  # (G,) median normalised similarity of the prompts' nearest target-labeled prompt
    count: np.ndarray  # (G,) prompts


def tally(groups: np.ndarray, n_groups: int, targets: np.ndarray, sims: np.ndarray, n_targets: int, radius: float) -> CrosswalkTally:
    """groups: (n,) source group of each prompt; targets: (n, k) target index of each neighbour (-1: none);
    sims: (n, k) normalised similarity in [0, 1] of each neighbour, most similar first."""
    groups = np.asarray(groups, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    sims = np.asarray(sims, dtype=np.float64)
    n = len(groups)
    valid = targets >= 0
    w = np.where(valid, np.maximum(sims, 1e-6), 0.0)
    per_prompt = w / np.maximum(w.sum(axis=1, keepdims=True), 1e-12)
    share = np.zeros((n_groups, n_targets))
    sim_sum = np.zeros((n_groups, n_targets))
    sim_n = np.zeros((n_groups, n_targets))
    rows = np.repeat(np.arange(n), targets.shape[1]) if n else np.zeros(0, dtype=np.int64)
    flat_t, flat_ok = targets.ravel(), valid.ravel()
    g_of = groups[rows][flat_ok]
    t_of = flat_t[flat_ok]
    np.add.at(share, (g_of, t_of), per_prompt.ravel()[flat_ok])
    np.add.at(sim_sum, (g_of, t_of), sims.ravel()[flat_ok])
    np.add.at(sim_n, (g_of, t_of), 1.0)
    count = np.bincount(groups, minlength=n_groups).astype(np.int64)
    share = share / np.maximum(count, 1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_sim = np.where(sim_n > 0, sim_sum / np.maximum(sim_n, 1), np.nan)
    best = np.where(valid[:, 0], sims[:, 0], 0.0) if n else np.zeros(0)
    inside = (best >= radius) & (valid[:, 0] if n else np.zeros(0, dtype=bool))
    coverage = np.bincount(groups, weights=inside.astype(float), minlength=n_groups) / np.maximum(count, 1)
    nearest = np.array([float(np.median(best[groups == g])) if count[g] else np.nan for g in range(n_groups)])
    return CrosswalkTally(share, mean_sim, coverage, nearest, count)


def read_proposal(share: np.ndarray, coverage: float) -> tuple[str, list[int], str]:
    """(reading, target indices it names, why) for one source group's shares."""
    order = sorted(range(len(share)), key=lambda t: (-share[t], t))
    if not order or share[order[0]] <= 0:
        return NO_COUNTERPART, [], "no target-labeled neighbours"
    top = float(share[order[0]])
    if coverage < MIN_COVERAGE:
        return NO_COUNTERPART, [], f"distant: {coverage:.0%} of its prompts have a target-labeled neighbour inside the radius"
    if top >= MAPS_SHARE:
        return MAPS_TO, [order[0]], f"top share {top:.0%}"
    split = [t for t in order[:3] if share[t] >= SPLIT_SHARE]
    if len(split) >= 2:
        return SPLITS_INTO, split, f"{len(split)} targets hold at least {SPLIT_SHARE:.0%} each"
    if top >= MIN_SHARE:
        return MAPS_TO, [order[0]], f"top share {top:.0%}"
    head = [t for t in order[:3] if share[t] >= MIN_PART]
    held = float(sum(share[t] for t in order[:3]))
    if len(head) >= 2 and held >= SPREAD_SHARE:
        return SPLITS_INTO, head, f"a broad category: its top 3 targets hold {held:.0%} together"
    return NO_COUNTERPART, [], f"weak: the top share is {top:.0%}, votes spread over many categories"
