"""Generated prompts for the crosswalk and overlap benchmarks: deterministic, no dataset text.

Each category has its own topic words; a prompt is a template filled with topic words and filler
words from a made-up vocabulary, so the hashing encoder puts a category's prompts near each other.
Duplicates are planted on purpose: exact copies and copies with one word changed."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

TEMPLATES = ("how can I {a} the {b} with {c} {x}", "explain {a} {b} and {c} for {x} {y}", "write a guide to {a} {b} {x} {c}",
             "what is the best way to {a} {b} {c} {x} {y}", "tell me about {a} and {b}, {c} {x}")


def vocabulary(rng: np.random.Generator, n: int) -> list[str]:
    syl = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "do", "fi", "gu", "ha", "je"]
    return sorted({"".join(rng.choice(syl, size=int(rng.integers(2, 4)))) for _ in range(n * 3)})[:n]


def prompts(n: int, categories: int, *, seed: int = 0, exact_share: float = 0.02, near_share: float = 0.03,
            topics: list[list[str]] | None = None) -> tuple[list[str], list[int], list[list[str]]]:
    """(texts, category index of each, topic words per category)."""
    rng = np.random.default_rng(seed)
    words = vocabulary(rng, 4000)
    topics = topics or [list(rng.choice(words[:1500], size=25, replace=False)) for _ in range(categories)]
    filler = words[1500:]
    texts, cats = [], []
    for i in range(n):
        c = int(rng.integers(len(topics)))
        t = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        a, b, cc = rng.choice(topics[c], size=3, replace=False)
        x, y = rng.choice(filler, size=2)
        texts.append(t.format(a=a, b=b, c=cc, x=x, y=y) + f" {i}")
        cats.append(c)
    n_exact, n_near = int(n * exact_share), int(n * near_share)
    for m, j in enumerate(rng.choice(n, size=n_exact, replace=False)):
        texts[(j + (1 if m % 2 else n // 3)) % n] = texts[j]  # an exact copy: half nearby, half a third further on
    for m, j in enumerate(rng.choice(n, size=n_near, replace=False)):
        texts[(j + (7 if m % 2 else n // 3 + 7)) % n] = texts[j] + "?"  # the same words, another text
    return texts, cats, topics


def write_csv(path: Path, texts: list[str], cats: list[int] | None, prefix: str, rows: range | None = None) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text"] + (["category"] if cats is not None else []))
        for i in rows if rows is not None else range(len(texts)):
            w.writerow([f"{prefix}{i}", texts[i]] + ([f"{prefix}{cats[i]:02d}"] if cats is not None else []))
    return path
