"""The store's curated data as `tstore adapt` trains on it, and its held-out split.

Read once from SQL: live labeled prompts (with their category at the chosen taxonomy level),
accepted challenging pairs and the non-rejected pairs of contrast sets. The held-out split
(`--holdout-fraction F`, seeded) splits the categorised unsafe prompts within each category,
holds out whole pair types (a type the encoder never saw pairs of: the hard test), and splits
the remaining safe and unsafe prompts at random; every prompt of a held-out pair is held out.

With `everyday`, the built-in set of everyday requests (`seeds/everyday/requests.txt`, written for
tstore) joins the training data as safe prompts outside any pair: a store of safety benchmarks
often holds no ordinary traffic at all, and then "safe" is learnt from look-alike twins alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from taxonomy_store.adapt.training import TrainingData
from taxonomy_store.catalog import live_prompts, node_index
from taxonomy_store.paths import package_dir
from taxonomy_store.text import normalise
from taxonomy_store.db.models import Pair, PairSet, Prompt
from taxonomy_store.taxonomy.trees import get_taxonomy, level_depth


@dataclass
class CuratedSet:
    ids: np.ndarray  # prompt ids, ascending
    texts: list[str]
    labels: np.ndarray  # "safe" / "unsafe" / "unlabeled"
    categories: np.ndarray  # category code at the level, "" when none
    pairs: list[tuple[int, int, str, str]]  # (unsafe id, safe id, pair type, pair-set kind)
    level: str = ""
    _pos: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._pos = {int(i): n for n, i in enumerate(self.ids.tolist())}

    def text(self, prompt_id: int) -> str:
        return self.texts[self._pos[prompt_id]]


def read_curated(session: Session, *, taxonomy: str, level: str | int) -> CuratedSet:
    tax = get_taxonomy(session, taxonomy)
    depth = level_depth(tax, level)
    level_name = tax.levels[depth] if depth < len(tax.levels) else str(depth)
    nodes = node_index(session)
    rows = live_prompts(session)
    cats = []
    for r in rows:
        node = nodes.get(r.category_id) if r.category_id is not None else None
        anc = node.at_depth(depth) if node is not None and node.taxonomy == taxonomy else None
        cats.append(nodes[anc].code if anc is not None else "")
    live = {r.id for r in rows}
    pair_rows = session.execute(
        select(Pair.unsafe_prompt_id, Pair.safe_prompt_id, Pair.pair_type, Pair.status, PairSet.kind)
        .join(PairSet, PairSet.id == Pair.pair_set_id)
        .join(Prompt, Prompt.id == Pair.unsafe_prompt_id)
        .order_by(Pair.id)
    ).all()
    pairs = [(u, s, t or "untyped", kind) for u, s, t, status, kind in pair_rows
             if u in live and s in live and (status == "accepted" or (kind == "contrast" and status != "rejected"))]
    return CuratedSet(
        ids=np.array([r.id for r in rows], dtype=np.int64), texts=[r.text for r in rows],
        labels=np.array([r.label for r in rows]), categories=np.array(cats), pairs=pairs, level=level_name,
    )


def holdout_split(data: CuratedSet, fraction: float | None, seed: int) -> tuple[set[int], set[int]]:
    """(training prompt ids, held-out prompt ids); without a fraction everything trains."""
    every = set(data.ids.tolist())
    if not fraction:
        return every, set()
    rng = np.random.default_rng(seed)
    held: set[int] = set()
    types = sorted({p[2] for p in data.pairs if p[3] == "challenging"})
    n_types = min(len(types) - 1, max(1, round(len(types) * fraction))) if len(types) > 1 else 0
    held_types = set(rng.permutation(types)[:n_types].tolist()) if n_types else set()
    contrast_units = sorted({p[0] for p in data.pairs if p[3] != "challenging"})
    held_units = set(rng.permutation(contrast_units)[: math.floor(len(contrast_units) * fraction)].tolist())
    for u, s, t, kind in data.pairs:
        if (kind == "challenging" and t in held_types) or (kind != "challenging" and u in held_units):
            held |= {u, s}
    paired = {p[0] for p in data.pairs} | {p[1] for p in data.pairs}
    groups: dict[str, list[int]] = {}
    for pid, lab, cat in zip(data.ids.tolist(), data.labels.tolist(), data.categories.tolist()):
        if pid not in paired:
            groups.setdefault(f"{lab}|{cat}", []).append(pid)
    for key in sorted(groups):
        members = groups[key]
        order = rng.permutation(len(members))
        held |= {members[i] for i in order[: math.floor(len(members) * fraction)]}
    return every - held, held


def training_data(data: CuratedSet, train_ids: set[int]) -> TrainingData:
    """The three training views of the prompts in train_ids (pairs only when both sides train)."""
    cat_texts, cat_labels, safe, unsafe, geometry = [], [], [], [], []
    paired = {p[0] for p in data.pairs} | {p[1] for p in data.pairs}
    for n, pid in enumerate(data.ids.tolist()):
        if pid not in train_ids:
            continue
        lab, cat = data.labels[n], data.categories[n]
        if lab == "unsafe":
            unsafe.append(data.texts[n])
            if cat:
                cat_texts.append(data.texts[n])
                cat_labels.append(str(cat))
        else:
            if lab == "safe":
                safe.append(data.texts[n])
            if pid not in paired:
                geometry.append(data.texts[n])
    pairs = [(data.text(u), data.text(s)) for u, s, _t, _k in data.pairs if u in train_ids and s in train_ids]
    return TrainingData(category_texts=cat_texts, category_labels=cat_labels, pairs=pairs, safe_texts=safe, unsafe_texts=unsafe,
                        geometry_texts=geometry)


EVERYDAY_FILE = ("everyday", "requests.txt")


def everyday_texts() -> list[str]:
    """The built-in everyday requests (one per line, normalised, in file order)."""
    path = package_dir("seeds").joinpath(*EVERYDAY_FILE)
    lines = (normalise(line) for line in path.read_text(encoding="utf-8").splitlines())
    return list(dict.fromkeys(t for t in lines if t))


def with_everyday(tdata: TrainingData, texts: list[str]) -> tuple[TrainingData, list[str]]:
    """tdata with the texts it does not already hold added as safe prompts outside any pair; and those texts."""
    known = set(tdata.category_texts) | set(tdata.safe_texts) | set(tdata.unsafe_texts) | set(tdata.geometry_texts)
    known |= {t for p in tdata.pairs for t in p}
    added = [t for t in texts if t not in known]
    return replace(tdata, safe_texts=[*tdata.safe_texts, *added], geometry_texts=[*tdata.geometry_texts, *added],
                   supplementary=tdata.supplementary + len(added)), added
