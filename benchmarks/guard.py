"""The guard on prompts it has never seen: `tstore evaluate` figures beside the previous guard's.

Store: the three paper datasets + AdvBench (unsafe) + AlpacaEval (everyday instructions, safe)
from ../shared/datasets, one encoder. Printed, for the guard as built (plain calibration: the
scorer with the best grouped-CV AUROC, balanced threshold, "nothing like it is stored") and
for the previous guard measured in the same run (kNN share, best-F1 threshold chosen
leave-one-out, no distance check):
- held out: half of AdvBench + half of AlpacaEval (seed 0): AUROC, AlpacaEval flagged, AdvBench caught;
- held out: all of AdvBench; all of AlpacaEval;
- the paper data only (both open sets held out): AlpacaEval flagged, AdvBench caught, AUROC;
- everyday instructions from a source the store never saw: each of AlpacaEval's five sources
  (self-instruct, OpenAssistant, Koala, helpful-base, Vicuna) held out in turn with half of
  AdvBench, the rest of AlpacaEval staying in the store (a check that the guard generalises
  beyond the sources it was calibrated on).

    python benchmarks/guard.py                       # builds a temporary store (minilm)
    python benchmarks/guard.py --store DIR           # an existing store (built there if absent)
    python benchmarks/guard.py --encoder sbert-all   # needs `tstore encoder install sbert-all`
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import DATASETS, cpu_model  # noqa: E402

PAPER = ("xstest_prompts.csv", "xstest_aug.csv", "do_not_answer.csv")
SCENARIOS = [
    ("half of both open sets held out (seed 0)", dict(holdout=["advbench", "alpaca_eval"], fraction=0.5, seed=0)),
    ("AdvBench held out", dict(holdout=["advbench"])),
    ("AlpacaEval held out", dict(holdout=["alpaca_eval"])),
    ("paper data only (both open sets held out)", dict(holdout=["advbench", "alpaca_eval"])),
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_store(path: Path, encoder: str):
    from taxonomy_store.store import Store, init_store

    if (path / "tstore-store.json").exists():
        return Store.open(path)
    store = init_store(path)
    store.taxonomies.load("do-not-answer")
    for name in PAPER:
        store.imports.import_file(DATASETS / name)
    store.imports.import_file(DATASETS / "advbench_harmful_behaviors.csv", dataset="advbench", mapping={"text": "goal"}, label="unsafe")
    store.imports.import_file(DATASETS / "alpaca_eval_instructions.jsonl", dataset="alpaca_eval",
                              mapping={"text": "instruction", "id": "id"}, label="safe")
    t = time.perf_counter()
    store.embeddings.embed(encoder)
    log(f"embedded {encoder} in {time.perf_counter() - t:.1f} s")
    return store


def previous_guard(store, encoder: str, holdout: list[str], fraction: float | None, seed: int) -> dict:
    """The guard before held-out evaluation: kNN share, best F1 chosen leave-one-out, no distance check."""
    from taxonomy_store.guard import calibration as C
    from taxonomy_store.guard import evaluation as E
    from taxonomy_store.metrics.detection import auroc, best_f1
    from taxonomy_store.guard.verdicts import decide, score_vectors

    pool = store.neighbours.pool(encoder)
    held = E._held_out(pool, holdout, fraction, seed)
    ref = C.Reference.of(pool, ~E._with_pair_twins(pool, held))
    b = C.encoder_baseline(pool)
    loo = C.in_sample("knn-share", ref, 10, b, None)
    pick = best_f1(loo, ref.is_unsafe)
    cal = C.Calibration(encoder=encoder, threshold=pick["threshold"], margin=0.05, k=10, objective="max_f1", target_fpr=None,
                        precision=0, recall=0, fpr=0, f1=0, auroc=auroc(loo, ref.is_unsafe), n_safe=0, n_unsafe=0,
                        n_reference=0, data_revision=0, fingerprint=None, computed_at="", score="knn-share", baseline=b)
    labels = pool.labels()
    rows = np.flatnonzero(held & np.isin(labels, ("safe", "unsafe")))
    scores, _ = score_vectors(pool, ref.mask, pool.vectors[rows], cal)
    verdicts = np.array([decide(float(s), cal)[0] for s in scores])
    y = labels[rows] == "unsafe"
    out = {"loo_auroc": cal.auroc, "auroc": auroc(scores, y) if y.any() and (~y).any() else None, "datasets": {}}
    for d in holdout:
        sel = np.array([d in pool.datasets[int(pool.prompt_ids[r])] for r in rows])
        v, yy = verdicts[sel], y[sel]
        out["datasets"][d] = {"caught" if yy.all() else "flagged": float(np.mean(v == "unsafe"))}
    return out


def by_source(store, encoder: str) -> list[tuple[str, int, str, float, float, float]]:
    """Leave one AlpacaEval source out (with half of AdvBench): (source, n, scorer, AUROC, flagged, caught)."""
    from taxonomy_store.guard import calibration as C
    from taxonomy_store.guard import evaluation as E
    from taxonomy_store.metrics.detection import auroc
    from taxonomy_store.guard.verdicts import decide, score_vectors

    with open(DATASETS / "alpaca_eval_instructions.jsonl", encoding="utf-8") as f:
        source = {r["instruction"].strip(): r["source"] for r in map(json.loads, f)}
    pool = store.neighbours.pool(encoder)
    labels = pool.labels()
    of = np.array([source.get(pool.rows[int(p)].text.strip()) if "alpaca_eval" in pool.datasets[int(p)] else None
                   for p in pool.prompt_ids], dtype=object)
    adv_half = E._held_out(pool, ["advbench"], 0.5, 0)
    out = []
    for name in sorted({x for x in of if x}):
        held = adv_half | (of == name)
        ref = C.Reference.of(pool, ~E._with_pair_twins(pool, held))
        cal = C.fit(ref, encoder=encoder, k=10, margin=C.DEFAULT_MARGIN, target_fpr=None, scorer=None, data_revision=0)
        rows = np.flatnonzero(held & np.isin(labels, ("safe", "unsafe")))
        scores, near = score_vectors(pool, ref.mask, pool.vectors[rows], cal)
        v = np.array([decide(float(a), cal, float(n))[0] for a, n in zip(scores, near)])
        y = labels[rows] == "unsafe"
        out.append((name, int((~y).sum()), cal.scorer, auroc(scores, y), float(np.mean(v[~y] == "unsafe")),
                    float(np.mean(v[y] == "unsafe"))))
    return out


def pct(v) -> str:
    return "   -  " if v is None else f"{100 * v:5.1f}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="an existing store (default: a temporary one)")
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    tmp = None
    if args.store:
        path = Path(args.store)
    else:
        tmp = tempfile.TemporaryDirectory()
        path = Path(tmp.name) / "store"
    store = build_store(path, args.encoder)
    store.embeddings.embed(args.encoder)  # only what is missing; sbert-all: `tstore encoder install sbert-all` first
    t = time.perf_counter()
    cal = store.guard.calibrate(args.encoder)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; encoder {args.encoder}")
    print(f"plain calibrate ({time.perf_counter() - t:.1f} s): scorer {cal.scorer}, grouped-CV AUROC {cal.auroc:.4f} "
          f"(in-sample leave-one-out {cal.in_sample_auroc:.4f}); per scorer: "
          + ", ".join(f"{n} {v['cv_auroc']:.4f}" for n, v in cal.scorers.items()))
    rows = []
    for title, kw in SCENARIOS:
        t = time.perf_counter()
        run = store.evaluation.evaluate(encoder=args.encoder, **kw)
        (split,) = run.details["splits"]
        before = previous_guard(store, args.encoder, kw["holdout"], kw.get("fraction"), kw.get("seed", 0))
        print(f"\n{title}  [{time.perf_counter() - t:.1f} s; scorer {split['scorer']}]")
        a_now, a_before = split.get("auroc"), before.get("auroc")
        print(f"  AUROC held-out  now {a_now if a_now is None else round(a_now, 4)}   before {a_before if a_before is None else round(a_before, 4)}"
              f"   | grouped-CV {split['cv_auroc']:.4f}  in-sample LOO {split['in_sample_auroc']:.4f}  (before: LOO {before['loo_auroc']:.4f})")
        for d, f in split["datasets"].items():
            key = "recall" if f.get("recall") is not None else "flagged"
            word = "caught" if key == "recall" else "flagged unsafe"
            was = before["datasets"][d].get("caught" if key == "recall" else "flagged")
            print(f"  {d:<12} {word:<15} now {pct(f[key])}  before {pct(was)}   "
                  f"(now: unsafe {pct(f['unsafe'])} uncertain {pct(f['uncertain'])} safe {pct(f['safe'])})")
            rows.append({"scenario": title, "dataset": d, "measure": word, "now": f[key], "before": was})
        rows.append({"scenario": title, "dataset": "*", "measure": "auroc", "now": a_now, "before": a_before})
    print("\nAlpacaEval source held out (with half of AdvBench; the other sources stay in the store)")
    for name, n, scorer, a, flagged, caught in by_source(store, args.encoder):
        print(f"  {name:<13} {n:4d} everyday  scorer {scorer:<12} AUROC {a:.4f}  flagged {pct(flagged)}  AdvBench caught {pct(caught)}")
        rows.append({"scenario": f"source {name} held out", "dataset": "alpaca_eval", "measure": "flagged unsafe", "now": flagged})
    if args.json:
        print(json.dumps(rows))
    store.close()
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
