"""Import throughput: `store.imports.import_file` on a generated 100,000-row CSV (no embedding).

Target: >= 5,000 rows/s. Named baseline, measured in the same run on the same rows: a plain
`csv.DictReader` pass plus one `sqlite3.executemany` into a bare table (no validation, no
hashing, no dedup, no sources, no audit log) — the floor cost of reading and storing the rows.

Usage: python benchmarks/import.py [--rows 100000] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

TARGET_ROWS_PER_S = 5000.0
WORDS = (
    "how can i make explain why would someone the a of to in for with without tell me about history process "
    "kill stop terminate bank account password chemistry recipe neighbour dog cat weather stock market bread"
).split()


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """Unique synthetic prompts, half safe half unsafe, categories from Do-Not-Answer's leaves."""
    from taxonomy_store.importers.taxonomy_files import locate, read_taxonomy_file

    leaves = [n.code for n, d in read_taxonomy_file(locate("do-not-answer")).walk() if d == 2]
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label", "category"])
        for i in range(rows):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 18))) + f" (case {i})?"
            unsafe = i % 2 == 0
            w.writerow([f"r{i}", text, "unsafe" if unsafe else "safe", rng.choice(leaves) if unsafe else ""])


def baseline(path: Path, db: Path) -> float:
    t0 = time.perf_counter()
    with path.open(encoding="utf-8", newline="") as f:
        rows = [(r["id"], r["text"], r["label"], r["category"]) for r in csv.DictReader(f)]
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE prompts (id TEXT PRIMARY KEY, text TEXT, label TEXT, category TEXT)")
    with con:
        con.executemany("INSERT INTO prompts VALUES (?, ?, ?, ?)", rows)
    con.close()
    return len(rows) / (time.perf_counter() - t0)


def ours(path: Path, store_dir: Path) -> tuple[float, dict]:
    from taxonomy_store.store import init_store

    store = init_store(store_dir)
    store.taxonomies.load("do-not-answer")  # not timed: a one-off, the same for any import
    t0, c0 = time.perf_counter(), time.process_time()
    summary = store.imports.import_file(path, taxonomy="do-not-answer")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    store.close()
    assert summary.added == summary.rows, summary
    # The machine is shared: CPU seconds of this process show what an idle core would give.
    return summary.rows / seconds, dict(summary.to_dict(), cpu_seconds=cpu)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "generated.csv"
        generate(data, args.rows)
        base = baseline(data, tmp / "baseline.db")
        rate, summary = ours(data, tmp / "store")
    rows = [
        dict(benchmark="import", measure=f"rows/s importing a {args.rows:,}-row CSV", ours=round(rate, 1),
             baseline_name="target 5,000 rows/s", baseline=TARGET_ROWS_PER_S, unit="rows/s",
             ratio=round(rate / TARGET_ROWS_PER_S, 3), target=1.0, met=rate >= TARGET_ROWS_PER_S),
        dict(benchmark="import", measure="ours / plain csv.DictReader + sqlite3.executemany", ours=round(rate, 1),
             baseline_name="csv.DictReader + sqlite3.executemany", baseline=round(base, 1), unit="rows/s",
             ratio=round(rate / base, 3), target=None, met=None),
    ]
    print(f"tstore import: {rate:,.0f} rows/s ({summary['rows']:,} rows in {summary['rows'] / rate:.2f}s; "
          f"{rate / TARGET_ROWS_PER_S:.2f}x the 5,000 rows/s target; {summary['rows'] / summary['cpu_seconds']:,.0f} rows per CPU-second)", file=sys.stderr if args.json else sys.stdout)
    print(f"baseline csv.DictReader + sqlite3.executemany: {base:,.0f} rows/s; ours/baseline = {rate / base:.3f}",
          file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
