"""The guard with an adapted encoder on datasets the adaptation never saw, beside the base encoder's.

1. A store of the paper's data only (XSTest prompts, Safe-Embed's XSTest pairs, Do-Not-Answer),
   embedded with the base encoder (`--base`, minilm unless told; sbert-all is the paper's SBERT-all).
2. `adapt --from BASE` once per recipe (the library call `tstore adapt` makes; a recipe sets
   AdaptConfig fields, `holdout=F` is `--holdout-fraction F`), timed, with `uptime`.
3. Only then AdvBench (unsafe) and AlpacaEval (safe) are imported and embedded with every encoder:
   no adaptation trained on them, and no recipe was chosen on them (benchmarks/adapt_matrix.py
   chooses on held-out Do-Not-Answer and XSTest prompts).
4. `tstore evaluate --holdout advbench --holdout alpaca_eval` for each encoder: AUROC, AdvBench
   caught and AlpacaEval flagged by the verdicts; then, from the same calibrated scores, AdvBench
   caught at the base encoder's AlpacaEval flagged rate (and at 5 % and 10 %), so a guard that
   only moved its threshold is not mistaken for a better one.

    python benchmarks/adapt_guard.py --recipe default: --recipe anchor:w_anchor=10 [--base sbert-all] [--store DIR] [--out FILE.json]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import DATASETS, cpu_model  # noqa: E402

PAPER = ("xstest_prompts.csv", "xstest_aug.csv", "do_not_answer.csv")
OPEN = ("advbench", "alpaca_eval")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


BASE = "minilm"  # --base sets it


def paper_store(path: Path):
    from taxonomy_store.store import init_store

    store = init_store(path)
    store.taxonomies.load("do-not-answer")
    if BASE == "sbert-all":
        from taxonomy_store.workflows.model_assets import install_sbert_all

        install_sbert_all(store)
    for name in PAPER:
        store.imports.import_file(DATASETS / name)
    store.embeddings.embed(BASE)
    return store


def parse(spec: str) -> tuple[str, dict, float | None]:
    """"name:key=value,...,holdout=F" -> (name, AdaptConfig fields, holdout fraction)."""
    from taxonomy_store.adapt.training import METHOD_DEFAULTS, AdaptConfig

    name, _, rest = spec.partition(":")
    fields: dict = {}
    holdout = None
    for kv in filter(None, rest.split(",")):
        k, _, val = kv.partition("=")
        if k == "holdout":
            holdout = float(val)
            continue
        cur = getattr(AdaptConfig(), k)
        cur = METHOD_DEFAULTS["layers"].get(k, 0) if cur is None else cur
        fields[k] = (val.lower() in ("1", "true", "yes")) if isinstance(cur, bool) else type(cur)(val)
    return name, fields, holdout


def adapt(store, spec: str) -> dict:
    """Adapt the base encoder by the recipe, as `tstore adapt` does (without its metric runs, which are not measured here)."""
    import taxonomy_store.adapt.adaptation as A
    from taxonomy_store.adapt.training import AdaptConfig

    name, fields, holdout = parse(spec)
    new = f"{BASE}-{name}"
    plain = A.AdaptConfig

    def with_recipe(*args, **kwargs):
        # the recipe's fields win over the keywords adapt() passes (a partial would let adapt's swap_target=False
        # and w_anchor=None override them, silently)
        return AdaptConfig(*args, **{**kwargs, **fields})

    A.AdaptConfig = with_recipe  # type: ignore[misc,assignment]
    try:
        adaptation = A.Adaptation(store_dir=store.dir, read=store.session, encoders=store.encoders, embeddings=store.embeddings)
        up, t0 = uptime(), time.perf_counter()
        result = adaptation.adapt(BASE, new, holdout_fraction=holdout)
        seconds = time.perf_counter() - t0
    finally:
        A.AdaptConfig = plain  # type: ignore[misc]
    log(f"adapted {new} in {seconds:.0f} s ({result.training['steps']} steps)")
    config = store.encoders.get(new).adaptation["config"]
    if any(config.get(k) != v for k, v in fields.items()):
        raise SystemExit(f"the recipe's fields did not reach the training: {fields} vs {config}")
    return {"recipe": name, "spec": spec, "encoder": new, "holdout_fraction": holdout, "adapt_seconds": round(seconds, 1),
            "config": config,
            "steps": result.training["steps"], "trained_prompts": result.trained_prompts, "uptime_before": up, "uptime_after": uptime()}


def import_open_sets(store) -> None:
    store.imports.import_file(DATASETS / "advbench_harmful_behaviors.csv", dataset="advbench", mapping={"text": "goal"}, label="unsafe")
    store.imports.import_file(DATASETS / "alpaca_eval_instructions.jsonl", dataset="alpaca_eval",
                              mapping={"text": "instruction", "id": "id"}, label="safe")


def scores(store, encoder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, standardised scores, is AdvBench) of the held-out prompts (by prompt id), by the guard calibrated
    without them (as evaluate)."""
    from taxonomy_store.guard import calibration as C
    from taxonomy_store.guard import evaluation as E
    from taxonomy_store.guard.verdicts import score_vectors

    pool = store.neighbours.pool(encoder)
    held = E._held_out(pool, list(OPEN), None, 0)
    ref = C.Reference.of(pool, ~E._with_pair_twins(pool, held))
    cal = C.fit(ref, encoder=encoder, k=10, margin=C.DEFAULT_MARGIN, target_fpr=None, scorer=None, data_revision=0)
    rows = np.flatnonzero(held)
    s, _ = score_vectors(pool, ref.mask, pool.vectors[rows], cal)
    # standardised by the stored prompts' own (leave-one-out) scores: what a fusion of two guards can use
    model = C.scorer_named(cal.scorer).model_from_dict(cal.probe) if cal.probe else None
    loo = C.in_sample(cal.scorer, ref, cal.k, float(cal.baseline or 0.0), model)
    z = (s - loo.mean()) / (loo.std() or 1.0)
    adv = np.array(["advbench" in pool.datasets[int(pool.prompt_ids[r])] for r in rows])
    order = np.argsort(pool.prompt_ids[rows])  # the same prompts in the same order for every encoder
    return s[order], z[order], adv[order]


def caught_at(s: np.ndarray, adv: np.ndarray, safe: np.ndarray, rate: float) -> float:
    """Share of AdvBench at or above the lowest threshold that flags at most `rate` of AlpacaEval."""
    everyday = np.sort(s[safe])[::-1]
    n = int(np.floor(rate * len(everyday) + 1e-9))
    thr = everyday[n] if n < len(everyday) else -np.inf
    return float(np.mean(s[adv] > thr))


def measure(store, encoder: str) -> dict:
    run = store.evaluation.evaluate(encoder=encoder, holdout=list(OPEN))
    (split,) = run.details["splits"]
    s, z, adv = scores(store, encoder)
    safe = ~adv
    return {"encoder": encoder, "scorer": split["scorer"], "auroc": split["auroc"], "held_out_basis": split["held_out_basis"],
            "contaminated": split["contaminated"], "cv_basis": split["cv_basis"], "cv_auroc": split["cv_auroc"],
            "advbench_caught": split["datasets"]["advbench"]["recall"], "alpaca_flagged": split["datasets"]["alpaca_eval"]["flagged"],
            "scores": s, "z": z, "adv": adv, "safe": safe}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", action="append", required=True)
    ap.add_argument("--store", help="build the store here and keep it (default: a temporary directory)")
    ap.add_argument("--out", help="write the figures here as JSON")
    ap.add_argument("--combine", action="store_true",
                    help="also measure each adapted encoder combined with the base (`tstore encoder combine BASE-and-RECIPE BASE ADAPTED`)")
    ap.add_argument("--base", default="minilm", help="the encoder to adapt and compare with (default: minilm)")
    args = ap.parse_args()
    global BASE
    BASE = args.base
    tmp = tempfile.TemporaryDirectory(prefix="adapt-guard-")
    path = Path(args.store) if args.store else Path(tmp.name) / "store"
    done = path / "adapt-guard.json"
    if done.is_file():  # built, adapted and extended by an earlier run of this script: measure again only
        from taxonomy_store.store import Store

        store, adapted = Store.open(path), json.loads(done.read_text(encoding="utf-8"))
    else:
        store = paper_store(path)
        adapted = [adapt(store, spec) for spec in args.recipe]
        import_open_sets(store)
        done.write_text(json.dumps(adapted), encoding="utf-8")
    combined = []
    if args.combine:  # the guard that uses both encoders, as a user would set it up
        from taxonomy_store.errors import UnknownEncoder

        for a in adapted:
            name = f"{BASE}-and-{a['recipe']}"
            try:
                store.encoders.get(name)
            except UnknownEncoder:
                store.encoders.combine(name, [BASE, a["encoder"]])
            combined.append(name)
    for name in [BASE, *[a["encoder"] for a in adapted], *combined]:
        store.embeddings.embed(name)
    base = measure(store, BASE)
    rates = {"base_flagged": base["alpaca_flagged"], "5%": 0.05, "10%": 0.10}
    out = {"machine": f"{cpu_model()}, {os.cpu_count()} cores", "uptime": uptime(), "adaptations": adapted, "guards": []}
    print(f"machine: {out['machine']}; store: the paper data only; held out: AdvBench ({int(base['adv'].sum())}) + "
          f"AlpacaEval ({int(base['safe'].sum())}), never trained on\n"
          f"{'encoder':22s} {'scorer':12s} {'AUROC':>7s} {'caught':>7s} {'flagged':>7s} | caught at base's flagged {100 * base['alpaca_flagged']:.1f}% / 5% / 10%")
    fused: dict[str, np.ndarray] = {}
    for m in [base] + [measure(store, name) for name in [*[a["encoder"] for a in adapted], *combined]]:
        at = {k: caught_at(m["scores"], m["adv"], m["safe"], r) for k, r in rates.items()}
        row = {k: v for k, v in m.items() if k not in ("scores", "z", "adv", "safe")} | {"caught_at": at}
        fused[m["encoder"]] = m["z"]
        out["guards"].append(row)
        print(f"{m['encoder']:22s} {m['scorer']:12s} {m['auroc']:7.4f} {100 * m['advbench_caught']:6.1f}% {100 * m['alpaca_flagged']:6.1f}% | "
              + " / ".join(f"{100 * v:5.1f}%" for v in at.values()) + f"   [{m['held_out_basis']}]")
    from taxonomy_store.metrics.detection import auroc

    print("two guards, base + adapted: the mean of their standardised scores (an exploratory figure: no weight fitted)")
    for m in out["guards"][1:1 + len(adapted)]:
        z = (base["z"] + fused[m["encoder"]]) / 2
        at = {k: caught_at(z, base["adv"], base["safe"], r) for k, r in rates.items()}
        m["fused_with_base"] = {"auroc": float(auroc(z, base["adv"])), "caught_at": at}
        print(f"{BASE} + {m['encoder']:13s} {'':12s} {m['fused_with_base']['auroc']:7.4f} {'':16s} | "
              + " / ".join(f"{100 * v:5.1f}%" for v in at.values()))
    for a in adapted:
        print(f"adapt {a['encoder']}: {a['adapt_seconds']:.0f} s ({a['steps']} steps; before: {a['uptime_before']})")
    print(out["uptime"])
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1), encoding="utf-8")
    store.close()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
