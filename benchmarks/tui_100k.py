"""The curators' TUI on a store of 100,000 prompts: first paint and Suspects first-open time.

Builds (once, reused) a store of generated prompts (benchmarks/import.py's generator: half safe,
half unsafe with Do-Not-Answer categories), embedded with the deterministic hashing encoder in
place of minilm (same 384 dimensions; the model is not what is timed). Then, in a headless Textual
pilot at 160x48:
- first paint: app start until the Prompts table shows its first page;
- Suspects first open: `4` until the suspects list is on screen (the out-of-sample probe runs);
- pair proposals (`m` on Pairs) when the tree under test has them.

Usage: python benchmarks/tui_100k.py [--rows 100000] [--store /tmp/tstore-bench-100k] [--json] [--no-proposals]
                                     [--baseline /work/main/.venv/bin/python] [--encoder NAME --in-place]
`--encoder NAME --in-place --no-proposals` opens an existing store (e.g. the 1M store that
`benchmarks/million.py --keep DIR` leaves in DIR/store, encoder h384) with that encoder, as it is,
without copying it (nothing is written without the proposals).
`--baseline PYTHON` times a second tree in the same run, on the same store: this script run by that
checkout's interpreter (whose editable install imports that checkout's package), after this tree;
both figures, their ratio and the load average at each are printed. (PYTHONPATH alone does not
switch trees: an editable install maps `taxonomy_store.tui` to its own checkout's `tui/`.)
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(store_dir: Path, rows: int) -> None:
    from taxonomy_store.backend.hashing_encoder import HashingEncoder
    from taxonomy_store.store import init_store

    spec = importlib.util.spec_from_file_location("bench_import", HERE / "import.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)  # type: ignore[union-attr]
    csv_path = Path(tempfile.mkdtemp()) / "prompts.csv"
    gen.generate(csv_path, rows)
    s = init_store(store_dir)
    try:
        s.taxonomies.load("do-not-answer")
        s.imports.import_file(csv_path)
        info = s.encoders.get("minilm")
        s.live_encoders.install(info, HashingEncoder(info.dimension or 384))
        t = time.perf_counter()
        s.embeddings.embed("minilm")
        print(f"built {rows:,} prompts, embedded in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    finally:
        s.close()


async def until(pilot, done, limit: float = 900.0) -> float:
    t = time.perf_counter()
    while not done():
        await pilot.pause(0.05)
        if time.perf_counter() - t > limit:
            raise TimeoutError("never finished")
    return time.perf_counter() - t


async def measure(store_dir: Path, proposals: bool = True, encoder: str | None = None) -> dict:
    from taxonomy_store.backend.hashing_encoder import HashingEncoder
    from taxonomy_store.store import Store
    from taxonomy_store.tui import make_app

    store = Store.open(store_dir)
    if encoder is None:  # the store this script builds: minilm's place taken by the hashing encoder
        info = store.encoders.get("minilm")
        store.live_encoders.install(info, HashingEncoder(info.dimension or 384))
    import taxonomy_store

    out: dict = {"tree": str(Path(taxonomy_store.__file__).resolve().parent.parent), "prompts": store.curation.count_prompts()}
    t0 = time.perf_counter()
    app = make_app(store, encoder=encoder, taxonomy="do-not-answer", start="prompts")
    async with app.run_test(size=(160, 48)) as pilot:
        table = app.screen.query_one("#prompt-table")
        await until(pilot, lambda: table.row_count > 0)
        out["first_paint_s"] = time.perf_counter() - t0
        await pilot.press("4")
        screen, suspects = app.screen, app.screen.query_one("#suspects-table")
        stages: dict[str, float] = {}
        t1 = time.perf_counter()

        def done() -> bool:  # also notes when each stage the status line names began (reading vectors, the probe)
            what = getattr(screen, "loading_what", None)
            if what and what.split(":")[0] not in stages:
                stages[what.split(":")[0]] = round(time.perf_counter() - t1, 2)
            return suspects.row_count > 0 and all(w.is_finished for w in app.workers if w.group == "suspects.load")

        out["suspects_first_open_s"] = await until(pilot, done)
        out["suspects_stage_starts"] = stages  # seconds after `4`
        await pilot.press("3")
        if proposals and any(getattr(b, "action", "") == "mine" for b in app.screen.BINDINGS):
            await pilot.press("m")
            out["pair_proposals_s"] = await until(pilot, lambda: not app.screen.mining and app.screen.status == "proposed")
        await pilot.press("ctrl+q")
    store.close()
    return out


def run_once(store: Path, proposals: bool, encoder: str | None = None, in_place: bool = False) -> dict:
    import os
    import shutil

    if in_place:
        if proposals:
            raise SystemExit("--in-place needs --no-proposals: the pair proposals write to the store")
        result = asyncio.run(measure(store, proposals, encoder))
    else:
        work = Path(tempfile.mkdtemp()) / "store"
        shutil.copytree(store, work)  # each run on its own copy: the pair proposals write
        try:
            result = asyncio.run(measure(work, proposals, encoder))
        finally:
            shutil.rmtree(work.parent, ignore_errors=True)
    result["load_average_1m"] = round(os.getloadavg()[0], 1)
    return result


def baseline(python: str, args: argparse.Namespace) -> dict:
    import subprocess

    cmd = [python, str(Path(__file__).resolve()), "--store", str(args.store), "--rows", str(args.rows), "--json"]
    if not args.proposals:
        cmd.append("--no-proposals")
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "tstore-bench-100k")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-proposals", dest="proposals", action="store_false", help="skip timing `m` on Pairs")
    ap.add_argument("--baseline", metavar="PYTHON", help="another checkout's interpreter: time that tree too, same store")
    ap.add_argument("--encoder", help="open the store with this encoder (default: minilm, replaced by the hashing encoder)")
    ap.add_argument("--in-place", action="store_true", help="measure the store itself, not a copy (with --no-proposals)")
    args = ap.parse_args()
    if not (args.store / "tstore.db").exists():
        build(args.store, args.rows)
    result = run_once(args.store, args.proposals, args.encoder, args.in_place)
    if args.baseline:
        base = baseline(args.baseline, args)
        result = {"ours": result, "baseline": base,
                  "ratio": {k: round(result[k] / base[k], 3) for k in result if k.endswith("_s") and isinstance(base.get(k), float)}}
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
