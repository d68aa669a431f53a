"""Run every benchmark and print one table of ratios (ours vs the named baseline, same run).

Each benchmark script accepts `--json` and then prints, as its last line, a JSON list of rows:
{"benchmark", "measure", "ours", "baseline_name", "baseline", "unit", "ratio", "target", "met"}.
Usage: python benchmarks/run_all.py [--only embed,query,...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model  # noqa: E402

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["import", "embed", "metrics", "query"]


def machine() -> str:
    cpu = cpu_model()
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}){mem}, Python {platform.python_version()}"


def run_one(name: str) -> tuple[list[dict], float, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", ANONYMIZED_TELEMETRY="False")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(HERE / f"{name}.py"), "--json"], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        return [], seconds, (proc.stderr or proc.stdout).strip().splitlines()[-1:][0] if (proc.stderr or proc.stdout).strip() else f"exit {proc.returncode}"
    last = proc.stdout.strip().splitlines()[-1]
    return json.loads(last), seconds, ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", default=",".join(BENCHMARKS))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows: list[dict] = []
    failed = []
    for name in args.only.split(","):
        print(f"running benchmarks/{name}.py ...", file=sys.stderr, flush=True)
        result, seconds, error = run_one(name)
        if error:
            failed.append(f"{name}: {error}")
        rows.extend(result)
        print(f"  done in {seconds:.0f}s", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"machine": machine(), "rows": rows, "failed": failed}))
        return 1 if failed else 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"tstore benchmarks on {machine()}")
    for col in ("benchmark", "measure", "ours", "baseline", "ratio", "target", "met"):
        table.add_column(col, justify="right" if col in ("ours", "baseline", "ratio") else "left")
    for r in rows:
        unit = r.get("unit", "")
        base = "" if r.get("baseline") is None else f"{r['baseline']:.4g} {unit} ({r.get('baseline_name', '')})"
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.2f}x"
        met = {True: "yes", False: "NO", None: ""}[r.get("met")]
        table.add_row(r["benchmark"], r["measure"], f"{r['ours']:.4g} {unit}", base, ratio, str(r.get("target", "")), met)
    Console(width=None if sys.stdout.isatty() else 180).print(table)
    for f in failed:
        print(f"FAILED {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
