"""`store.coverage`: which prompts of a dataset (stored or still a file) the store does not cover.

A prompt is *covered* when a labeled stored prompt (safe or unsafe) lies inside the calibrated
radius of "like something stored"; *near unsafe* when an unsafe one does. Beside that, the verdict
the guard would give it: a stored dataset's own prompts never count as its neighbours, so the
report reads the same before and after `tstore import`. Per category of the dataset, and overall.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from taxonomy_store.crosswalks.proposals import category_at, level_depth, radius_of
from taxonomy_store.errors import InvalidValue, NotFound
from taxonomy_store.guard.calibration import Calibration
from taxonomy_store.guard.scorers import normalised_similarity
from taxonomy_store.guard.verdicts import decide, score_vectors
from taxonomy_store.neighbours.service import Filters, Pool
from taxonomy_store.text import text_sha256
from taxonomy_store.vocabulary import JUDGED_LABELS

NO_CATEGORY = "(none)"
VERDICTS = ("unsafe", "uncertain", "safe")


@dataclass
class CategoryCoverage:
    category: str
    prompts: int
    covered: float  # share with a labeled stored prompt inside the radius
    near_unsafe: float  # share with an unsafe stored prompt inside the radius
    verdicts: dict[str, float]  # verdict -> share (empty when the encoder is not calibrated)
    median_nearest: float  # median normalised similarity to the nearest labeled stored prompt


@dataclass
class CoverageReport:
    of: str  # "dataset NAME" or "file PATH"
    encoder: str
    radius: float
    radius_from: str
    categories: list[CategoryCoverage]
    overall: CategoryCoverage
    uncovered: list[dict[str, Any]] = field(default_factory=list)  # the least covered prompts
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Input:
    of: str
    vectors: np.ndarray
    texts: list[str]
    keys: list[Any]
    categories: list[str]
    exclude: np.ndarray  # pool rows that may not be neighbours (the dataset's own prompts)


class Coverage:
    def __init__(self, encoders, neighbours, embeddings):
        # encoders: the registry; neighbours: the exact neighbour service; embeddings: the live encoders (files).
        self._encoders = encoders
        self._neighbours = neighbours
        self._embeddings = embeddings

    def _pool(self, encoder: str | None) -> Pool:
        return self._neighbours.pool(encoder or self._encoders.default_name())

    def of_dataset(self, name: str, *, taxonomy: str | None = None, level: str | None = None, encoder: str | None = None,
                   uncovered: int = 20) -> CoverageReport:
        """Coverage of a stored dataset's prompts by the rest of the store."""
        pool = self._pool(encoder)
        inside = np.fromiter((name in pool.datasets.get(int(p), ()) for p in pool.prompt_ids), dtype=bool, count=len(pool))
        if not inside.any():
            raise NotFound(f"no prompt of dataset {name!r} has a vector of {pool.encoder!r}",
                           f"see `tstore db current` / import it, then `tstore embed --encoder {pool.encoder}`")
        rows = np.flatnonzero(inside)
        cats = [self._category(pool, int(pool.prompt_ids[r]), taxonomy, level) for r in rows]
        texts = [pool.rows[int(pool.prompt_ids[r])].text for r in rows]
        data = _Input(f"dataset {name}", pool.vectors[rows], texts, [int(pool.prompt_ids[r]) for r in rows], cats, inside)
        return self._report(pool, data, uncovered)

    def of_file(self, path: str, *, mapping: dict[str, str] | None = None, label: str | None = None, fmt: str | None = None,
                encoder: str | None = None, uncovered: int = 20) -> CoverageReport:
        """Coverage of a data file's prompts before import (prompts the store already holds are left out as neighbours)."""
        from taxonomy_store.importers import parse_file

        parsed = parse_file(Path(path), format=fmt, mapping=mapping, label=label)
        if not parsed.prompts:
            raise InvalidValue(f"{path} holds no prompts")
        pool = self._pool(encoder)
        hashes = {text_sha256(p.text) for p in parsed.prompts}
        exclude = np.fromiter((pool.rows[int(p)].text_sha256 in hashes for p in pool.prompt_ids), dtype=bool, count=len(pool))
        texts = [p.text for p in parsed.prompts]
        vectors = np.asarray(self._embeddings.live_encoder(pool.info).encode(texts), dtype=np.float32)
        cats = [_ref_name(p.category) for p in parsed.prompts]
        return self._report(pool, _Input(f"file {path}", vectors, texts, [p.key for p in parsed.prompts], cats, exclude), uncovered)

    @staticmethod
    def _category(pool: Pool, pid: int, taxonomy: str | None, level: str | None) -> str:
        cid = pool.rows[pid].category_id
        node = pool.nodes.get(cid) if cid is not None else None
        if node is None or (taxonomy and node.taxonomy != taxonomy):
            return NO_CATEGORY
        depth, _ = level_depth(pool, node.taxonomy, level, role="dataset")
        at = category_at(node, depth)
        return pool.nodes[at].code if at is not None else NO_CATEGORY

    def _report(self, pool: Pool, data: _Input, uncovered: int) -> CoverageReport:
        labeled = pool.mask(Filters(label=JUDGED_LABELS)) & ~data.exclude
        if not labeled.any():
            raise InvalidValue("no labeled stored prompt is left to cover these prompts", "import labeled prompts first")
        radius, radius_from, b = radius_of(pool, labeled, self._neighbours.nearest)
        _i, sims = self._neighbours.nearest(pool, data.vectors, 1, mask=labeled)
        near = normalised_similarity(np.where(np.isfinite(sims[:, 0]), sims[:, 0], -1.0), b)
        unsafe = labeled & (pool.labels() == "unsafe")
        _i, usims = self._neighbours.nearest(pool, data.vectors, 1, mask=unsafe)
        unear = normalised_similarity(np.where(np.isfinite(usims[:, 0]), usims[:, 0], -1.0), b)
        cal = Calibration.from_dict(pool.info.calibration)
        warnings = []
        if cal is None:
            verdicts: list[str | None] = [None] * len(data.texts)
            warnings.append(f"encoder {pool.encoder!r} is not calibrated: no verdicts (run `tstore calibrate`)")
        else:
            scores, nearest = score_vectors(pool, labeled, data.vectors, cal)
            verdicts = [decide(float(s), cal, float(n))[0] for s, n in zip(scores, nearest)]
        covered, near_unsafe = near >= radius, unear >= radius
        groups = sorted(set(data.categories), key=lambda c: (c == NO_CATEGORY, c))
        cats = [_summary(c, [i for i, x in enumerate(data.categories) if x == c], covered, near_unsafe, verdicts, near) for c in groups]
        overall = _summary("all", list(range(len(data.texts))), covered, near_unsafe, verdicts, near)
        worst = np.argsort(near, kind="stable")[:uncovered]
        lost = [dict(key=data.keys[i], category=data.categories[i], text=data.texts[i], nearest_similarity=float(near[i]),
                     verdict=verdicts[i]) for i in worst if not covered[i]]
        return CoverageReport(data.of, pool.encoder, radius, radius_from, cats, overall, lost, warnings)


def _summary(name: str, idx: list[int], covered, near_unsafe, verdicts, near) -> CategoryCoverage:
    n = len(idx)
    counts = Counter(verdicts[i] for i in idx if verdicts[i] is not None)
    return CategoryCoverage(
        category=name, prompts=n, covered=float(np.mean(covered[idx])) if n else 0.0,
        near_unsafe=float(np.mean(near_unsafe[idx])) if n else 0.0,
        verdicts={v: counts[v] / n for v in VERDICTS} if counts else {},
        median_nearest=float(np.median(near[idx])) if n else 0.0,
    )


def _ref_name(ref) -> str:
    if ref is None or ref == "":
        return NO_CATEGORY
    return str(ref[-1]) if isinstance(ref, tuple) else str(ref)


def bar_chart(report: CoverageReport, path: str) -> None:
    """A PNG of covered / near-unsafe / called-safe shares per category."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cats = report.categories + [report.overall]
    names = [c.category for c in cats]
    x = np.arange(len(cats))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(cats) + 2), 4.5))
    series = [("covered", [c.covered for c in cats], "#4c72b0"), ("near unsafe", [c.near_unsafe for c in cats], "#8172b2"),
              ("called unsafe", [c.verdicts.get("unsafe", 0.0) for c in cats], "#55a868"),
              ("called safe", [c.verdicts.get("safe", 0.0) for c in cats], "#c44e52")]
    for j, (label, values, colour) in enumerate(series):
        ax.bar(x + (j - 1.5) * 0.2, values, 0.2, label=label, color=colour)
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("share of prompts")
    ax.set_title(f"coverage of {report.of} ({report.encoder}, radius {report.radius:.3f})")
    ax.legend(ncol=4, loc="upper center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
