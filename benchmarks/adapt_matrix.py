"""The pair-type split of benchmarks/adapt.py in both directions and on two split seeds, for one or more recipes.

Cells: "forward" trains on the XSTest pair types homonyms, figurative_language, target, context,
definitions and holds out group, action, history, privacy_publicity, privacy_fictionality;
"swapped" the other way round (benchmarks/adapt.py --swap-types). Split seed S also seeds training.
Every cell measures the base encoder (minilm) and the tuned one on the held-out half, as
benchmarks/adapt.py does, plus a validation guard AUROC without AlpacaEval
(`guard_auroc_dna_pairs`: held-out Do-Not-Answer half and held-out pairs only), the figure used
to choose a recipe for the guard, so that AdvBench and AlpacaEval stay out of every choice.
Each cell appends one JSON line to --out (figures, wall time of the training, load average and
`uptime` before and after), so a long matrix can be watched and an interrupted one resumed.

    python benchmarks/adapt_matrix.py --recipe anchor:w_anchor=10 [--recipe default:] \
        [--cells forward:0,forward:1,swapped:0,swapped:1] --out benchmarks/results/adapt_matrix.jsonl

--validate chooses a recipe without looking at the cell's held-out pair types: inside the cell, the
first of its five TRAINING pair types in alphabetical order (forward: context; swapped: action) is
taken out of training and becomes the validation type; the recipe trains on the other four, and the
row's pair figures are those of the validation type (the cell's held-out types are neither trained on
nor measured). CP@10, Spearman and the guard figures are measured as in a plain cell (held-out
Do-Not-Answer half, held-out everyday prompts). Rows carry "mode": "validation" and the type.
--choose FILE applies the selection rule (`choose`) to such rows and prints the recipe it picks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapt import (HELD_TYPES, TRAIN_TYPES, base_lookup, datasets_dir, encode_all, everyday_spearman,  # noqa: E402
                   evaluate, load_split, minilm_path, training_data)

from taxonomy_store import metrics as M  # noqa: E402
from taxonomy_store.adapt.data import everyday_texts, with_everyday  # noqa: E402
from taxonomy_store.adapt.methods import train  # noqa: E402
from taxonomy_store.adapt.training import METHOD_DEFAULTS, AdaptConfig, resolved  # noqa: E402

CELLS = ("forward:0", "forward:1", "swapped:0", "swapped:1")
KEYS = ("cp@10_macro", "pair_norm_macro", "pair_cos_macro", "b", "everyday_spearman", "guard_auroc", "guard_auroc_pairs",
        "guard_auroc_dna_pairs")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def recipe(spec: str, seed: int) -> tuple[str, AdaptConfig]:
    """"name:key=value,key=value" -> (name, the config with those fields set, seeded)."""
    name, _, rest = spec.partition(":")
    cfg = AdaptConfig(seed=seed)
    for kv in filter(None, rest.split(",")):
        k, _, val = kv.partition("=")
        cur = getattr(cfg, k)
        if cur is None:
            cur = METHOD_DEFAULTS["layers"].get(k, 0)
        setattr(cfg, k, (val.lower() in ("1", "true", "yes")) if isinstance(cur, bool) else type(cur)(val))
    return name, cfg


def guard_without_everyday(v: dict[str, np.ndarray]) -> float:
    """kNN guard AUROC (k=10, the training prompts as the store) on the held-out Do-Not-Answer half and pairs only."""
    ref = np.vstack([v["ref_unsafe"], v["ref_safe"]])
    ref_y = np.r_[np.ones(len(v["ref_unsafe"]), bool), np.zeros(len(v["ref_safe"]), bool)]
    q = np.vstack([v["held_dna"], v["held_u"], v["held_s"]])
    qy = np.r_[np.ones(len(v["held_dna"]) + len(v["held_u"]), bool), np.zeros(len(v["held_s"]), bool)]
    nb, sims = M.knn_query(q, ref, 10)
    return float(M.auroc(M.detection.knn_scores(nb, sims, ref_y, 10), qy))


def validation_split(split: dict) -> dict:
    """The cell's split with its first training pair type (alphabetically) moved out of training into the
    held-out pairs, and the cell's own held-out pair types left out of both."""
    val = sorted({t for _, _, t in split["train_pairs"]})[0]
    return {**split, "held_types": (val,), "train_pairs": [p for p in split["train_pairs"] if p[2] != val],
            "held_pairs": [p for p in split["train_pairs"] if p[2] == val]}


# The rule fixed before any validation row was seen (docs/BENCHMARKS.md, round five).
MIN_CP_GAIN, MIN_SPEARMAN = 0.10, 0.85


def choose(rows: list[dict]) -> tuple[str, dict[str, dict[str, float]]]:
    """Among recipes with CP@10 change >= +0.10 and Spearman >= 0.85 in every validation cell, the one with the
    most negative mean change of validation pair similarity; if none qualifies, the highest smallest CP@10 change.
    Returns (name, per recipe: its mean pair change, smallest CP@10 change, smallest Spearman, cells)."""
    by: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("mode") == "validation":
            by.setdefault(r["recipe"], []).append(r)
    summary = {name: {"pair_mean": float(np.mean([r["change"]["pair_norm_macro"] for r in rs])),
                      "cp_min": min(r["change"]["cp@10_macro"] for r in rs),
                      "spearman_min": min(r["tuned"]["everyday_spearman"] for r in rs), "cells": len(rs)}
               for name, rs in by.items()}
    cells = max(v["cells"] for v in summary.values())
    ok = [n for n, v in summary.items() if v["cells"] == cells and v["cp_min"] >= MIN_CP_GAIN and v["spearman_min"] >= MIN_SPEARMAN]
    if ok:
        return min(ok, key=lambda n: summary[n]["pair_mean"]), summary
    return max(summary, key=lambda n: summary[n]["cp_min"]), summary


BASE_MODEL = {"path": None}  # --base-model: another sentence-transformers folder than minilm (e.g. sbert-all's)


def run_cell(cell: str, specs: list[str], out: Path, done: set[tuple[str, str]], validate: bool = False) -> None:
    direction, seed_s = cell.split(":")
    seed = int(seed_s)
    split = load_split(datasets_dir(), seed, TRAIN_TYPES if direction == "swapped" else HELD_TYPES)
    if validate:
        split = validation_split(split)
    base_path = BASE_MODEL["path"] or minilm_path()
    tag = "" if BASE_MODEL["path"] is None else Path(base_path).name + "-"
    cache = Path(tempfile.gettempdir()) / f"adapt-matrix-{tag}{'val-' if validate else ''}{direction}-{seed}.npz"
    base = base_lookup(base_path, split, cache)
    v0 = encode_all(base_path, split, base)
    before = evaluate(v0, split)
    before.update(everyday_spearman=1.0, guard_auroc_dna_pairs=guard_without_everyday(v0))
    for spec in specs:
        name, cfg = recipe(spec, seed)
        if (name, cell) in done:
            continue
        up0, t0 = uptime(), time.perf_counter()
        tdata = training_data(split)
        if cfg.everyday:  # as `tstore adapt --everyday`: the built-in everyday requests train beside the split's prompts
            tdata, _ = with_everyday(tdata, everyday_texts())
        with tempfile.TemporaryDirectory() as tmp:
            info = train(base_path, tdata, cfg, tmp, frozen=None if cfg.everyday else base)
            t_train = time.perf_counter() - t0
            v1 = encode_all(tmp, split)
        after = evaluate(v1, split)
        after.update(everyday_spearman=everyday_spearman(v0, v1), guard_auroc_dna_pairs=guard_without_everyday(v1))
        row = {"recipe": name, "spec": spec, "base_model": Path(base_path).name, "cell": cell, "direction": direction, "split_seed": seed, "training_seed": seed,
               "mode": "validation" if validate else "test", "held_types": list(split["held_types"]), "base": before, "tuned": after,
               "change": {k: after[k] - before[k] for k in after if k in before},
               "train_seconds": round(t_train, 1), "steps": info["steps"], "config": {k: v for k, v in vars(resolved(cfg)).items() if k != "extra"},
               "cpu_cores": os.cpu_count(), "uptime_before": up0, "uptime_after": uptime()}
        with open(out, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        ch = row["change"]
        print(f"{name:12s} {cell:10s} CP@10 {ch['cp@10_macro']:+.3f}  pairs {ch['pair_norm_macro']:+.3f}  "
              f"rho {after['everyday_spearman']:.3f}  guard {ch['guard_auroc']:+.3f}  guard(dna+pairs) {ch['guard_auroc_dna_pairs']:+.3f}"
              f"  train {t_train:.0f} s  [{row['uptime_after']}]", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", action="append", help="name:key=value,... (AdaptConfig fields; name: alone = the default)")
    ap.add_argument("--cells", default=",".join(CELLS))
    ap.add_argument("--out")
    ap.add_argument("--validate", action="store_true", help="hold the cell's first training pair type out as validation")
    ap.add_argument("--base-model", metavar="DIR", help="tune this sentence-transformers folder instead of minilm "
                    "(sbert-all: the folder `tstore encoder install sbert-all` assembles, ~/.cache/tstore/models/all-mpnet-base-v2)")
    ap.add_argument("--choose", metavar="FILE", help="print the recipe the selection rule picks from FILE's validation rows")
    args = ap.parse_args()
    if args.choose:
        rows = [json.loads(line) for line in Path(args.choose).read_text(encoding="utf-8").splitlines() if line.strip()]
        name, summary = choose(rows)
        for n, v in summary.items():
            print(f"{n:14s} validation pair change (mean) {v['pair_mean']:+.3f}  CP@10 change (min) {v['cp_min']:+.3f}  "
                  f"Spearman (min) {v['spearman_min']:.3f}  cells {v['cells']}")
        print(f"chosen: {name}")
        return
    if not args.recipe or not args.out:
        ap.error("--recipe and --out are required (unless --choose)")
    BASE_MODEL["path"] = args.base_model
    out = Path(args.out)
    done: set[tuple[str, str]] = set()
    if out.is_file():
        rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines() if line.strip()]
        done = {(r["recipe"], r["cell"]) for r in rows}
    for cell in args.cells.split(","):
        run_cell(cell, args.recipe, out, done, args.validate)


if __name__ == "__main__":
    main()
