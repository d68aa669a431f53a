"""The issue's must-show through the CLI: `tstore adapt` on a store that holds only the training half.

benchmarks/adapt.py calls the training function on the split directly; this script does what a
user does. It writes the training half of the split (benchmarks/adapt.py's `load_split`, same
seed) as dataset files in a temporary directory, then runs, each as a `tstore` command in a
fresh store: import (Do-Not-Answer half, the five training pair types of Safe-Embed's pairs,
AdvBench, AlpacaEval minus the 300 held-out instructions), embed (minilm), `adapt --from
minilm --name minilm-safe` with nothing else (timed: training + embedding the store with NEW),
`encoder export`. The held-out half is then encoded with FROM and with the exported NEW and
measured with benchmarks/adapt.py's `evaluate`.

    python benchmarks/adapt_store.py [--split-seed 0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from adapt import HELD_TYPES, _row, datasets_dir, encode_all, everyday_spearman, evaluate, load_split, minilm_path  # noqa: E402


def write_training_half(split: dict, root: Path, out: Path) -> list[list[str]]:
    """The training half as files the importers read; the `tstore import` argument lists."""
    keep_dna = {q for q, _ in split["train_dna"]}
    with open(root / "do_not_answer.csv", encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r["question"] in keep_dna]
        fields = reader.fieldnames
    with open(out / "do_not_answer.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    with open(root / "xstest_aug.csv", encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r["type"] not in HELD_TYPES]
        fields = reader.fieldnames
    with open(out / "xstest_aug.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    keep_alpaca = set(split["train_alpaca"])
    with open(root / "alpaca_eval_instructions.jsonl", encoding="utf-8") as f, \
            open(out / "alpaca_eval_instructions.jsonl", "w", encoding="utf-8") as g:
        for line in f:
            if line.strip() and json.loads(line)["instruction"] in keep_alpaca:
                g.write(line)
    return [
        [str(out / "do_not_answer.csv")],
        [str(out / "xstest_aug.csv")],
        [str(root / "advbench_harmful_behaviors.csv"), "--dataset", "advbench", "--map", "text=goal", "--label", "unsafe"],
        [str(out / "alpaca_eval_instructions.jsonl"), "--dataset", "alpaca_eval", "--map", "text=instruction,id=id",
         "--label", "safe"],
    ]


def tstore(store: Path, *args: str) -> str:
    exe = Path(sys.executable).with_name("tstore")
    r = subprocess.run([str(exe), "--store", str(store), *args], capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    if r.returncode != 0:
        raise SystemExit(f"tstore {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--keep", default=None, help="build the store here and keep it (default: a temporary directory)")
    args = ap.parse_args()
    split = load_split(datasets_dir(), args.split_seed)
    with tempfile.TemporaryDirectory(prefix="adapt-store-") as tmp_name:
        tmp = Path(tmp_name)
        store = Path(args.keep) if args.keep else tmp / "store"
        tstore(store, "init")
        for argv in write_training_half(split, datasets_dir(), tmp):
            tstore(store, "import", *argv)
        t0 = time.perf_counter()
        tstore(store, "embed")
        t_embed = time.perf_counter() - t0
        t0 = time.perf_counter()
        table = tstore(store, "adapt", "--from", "minilm", "--name", "minilm-safe")
        t_adapt = time.perf_counter() - t0
        tstore(store, "encoder", "export", "minilm-safe", str(tmp / "minilm-safe"))
        v0 = encode_all(minilm_path(), split)
        v1 = encode_all(str(tmp / "minilm-safe"), split)
    before, after = evaluate(v0, split), evaluate(v1, split)
    before["everyday_spearman"], after["everyday_spearman"] = 1.0, everyday_spearman(v0, v1)
    print(table)
    print(f"split seed {args.split_seed}: the store held the training half only; held-out figures")
    print(f"{'metric (held out)':32s} {'minilm':>8s} {'minilm-safe':>8s} {'delta':>8s}")
    for k in ["cp@10_macro", "pair_norm_macro", *[f"pair_norm.{t}" for t in HELD_TYPES], "b", "everyday_spearman",
              "guard_auroc", "guard_auroc_pairs"]:
        print(_row(k, before, after))
    print(f"wall time: embed (minilm) {t_embed:.0f} s; `tstore adapt --from minilm --name minilm-safe` {t_adapt:.0f} s "
          f"(training + embedding the store with NEW + its metric runs); {os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
