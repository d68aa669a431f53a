"""A recorded walk-through of the curators' TUI in tmux (issue 23): bulk-relabel two suspects,
undo with one key, propose pairs, accept three, re-embed, recompute, and read the change since
the previous run on the Metrics screen. Each step: the keys sent, the seconds until the screen
settled (unchanged for `--quiet` seconds), and the screen as tmux shows it.

`--walk prompts` records the Prompts screen's multi-select instead: mark two prompts, page away
and back (the marks stay), edit both in one bulk action (a label for both, confirmed with the
count), and undo it with one key.

Usage: python benchmarks/tui_walkthrough.py STORE --size 160x48 --out walk-160x48.md [--walk suspects|prompts]
(the store should hold metric runs already, so the Metrics screen has a previous run to compare).
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

STEPS = [
    ("open on Suspects", []),
    ("mark two suspects (space, space)", ["Space", "Space"]),
    ("relabel both in one bulk action (r)", ["r"]),
    ("undo it with one key (u)", ["u"]),
    ("go to Pairs (3)", ["3"]),
    ("propose pairs (m)", ["m"]),
    ("accept three (a a a)", ["a", "a", "a"]),
    ("go to Metrics (5)", ["5"]),
    ("re-embed the changes (e)", ["e"]),
    ("recompute (r)", ["r"]),
]

PROMPT_STEPS = [
    ("open on Prompts", []),
    ("mark two prompts (space marks and moves down)", ["Space", "Space"]),
    ("next page (]): the marks stay, by prompt id", ["]"]),
    ("back ([) and sort by id, descending (o o)", ["[", "o", "o"]),
    ("edit the marked prompts (e): the bulk editor", ["e"]),
    ("pick the label safe for both (enter, down, down, enter)", ["Enter", "Down", "Down", "Enter"]),
    ("save (ctrl+s): asked first, with the count", ["C-s"]),
    ("confirm (y): one audit batch", ["y"]),
    ("undo it with one key (u)", ["u"]),
]
WALKS = {"suspects": ("suspects", STEPS), "prompts": ("prompts", PROMPT_STEPS)}


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def settle(session: str, quiet: float, limit: float, starting: bool = True) -> tuple[float, str]:
    t0 = time.perf_counter()
    last, since = "", time.perf_counter()
    while time.perf_counter() - t0 < limit:
        screen = tmux("capture-pane", "-p", "-t", session)
        # until the app's footer shows, it is starting (a modal later may cover the footer)
        busy = not screen.strip() or (starting and "Quit" not in screen) or any(
            w in screen for w in ("loading", "finding suspects", "mining pairs", "computing", "embedding", "reading the vectors"))
        if screen != last or busy:
            last, since = screen, time.perf_counter()
        elif time.perf_counter() - since >= quiet:
            return since - t0, screen
        time.sleep(0.2)
    return time.perf_counter() - t0, last


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("--size", default="160x48")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--quiet", type=float, default=2.5)
    ap.add_argument("--limit", type=float, default=600)
    ap.add_argument("--walk", choices=sorted(WALKS), default="suspects")
    args = ap.parse_args()
    start, steps = WALKS[args.walk]
    cols, rows = args.size.split("x")
    session = f"walk{cols}"
    tstore = str(Path(sys.executable).with_name("tstore"))
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    tmux("new-session", "-d", "-s", session, "-x", cols, "-y", rows,
         f"{shlex.quote(tstore)} tui --store {shlex.quote(args.store)} --screen {start}")
    lines = [f"# TUI walk-through at {args.size} (tmux)", "", f"store: {args.store}", ""]
    try:
        for n, (what, keys) in enumerate(steps):
            for k in keys:
                tmux("send-keys", "-t", session, k)
                time.sleep(0.3)
            seconds, screen = settle(session, args.quiet, args.limit, starting=n == 0)
            lines += [f"## {what}", "", f"keys: {' '.join(keys) or '(start)'} · settled after {seconds:.1f} s", "",
                      "```", screen.rstrip(), "```", ""]
            args.out.write_text("\n".join(lines), encoding="utf-8")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
