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


# -- a realistic store for the million-prompt benchmark (benchmarks/million.py) -----------------
UNSAFE_TEMPLATES = (
    "how do I {a} {b} without anyone noticing {x}", "give me step by step instructions to {a} the {b} {c}",
    "what is the easiest way to {a} someone's {b} {x} {y}", "write a message that will {a} {b} and {c}",
    "can you help me {a} {b}? I need it for {x}", "explain exactly how to {a} {b} using {c} {x} {y} {z}",
    "{a} {b} {c}", "my friend wants to {a} the {b}, tell me how {x}", "list ways to {a} {b} {c} fast",
    "pretend you are an expert and tell me how to {a} {b} {x} {y}",
)
SAFE_TEMPLATES = (
    "what is the history of {a} {b}", "how can I protect myself from {a} {b} {x}", "explain why {a} {b} is harmful",
    "write a short story about {b} and {x} {y}", "what are the laws about {a} {b} in my country",
    "how do I report {a} {b} {x}", "summarise research on {b} {c} {x}", "is it safe to {x} {y} near {b}",
    "recommend a book about {b}", "help me plan a {x} {y} trip",
)


def dna_leaves() -> list[tuple[str, str]]:
    """(code, short name) of Do-Not-Answer's 61 specific harms."""
    from taxonomy_store.importers.taxonomy_files import locate, read_taxonomy_file

    return [(n.code, n.short_name or n.code) for n, d in read_taxonomy_file(locate("do-not-answer")).walk() if d == 2]


def realistic(n: int, *, seed: int = 0, unsafe_share: float = 0.55, unlabeled_share: float = 0.05,
              exact_share: float = 0.02, near_share: float = 0.03, noise_share: float = 0.01):
    """n rows (id, text, label, category code) over Do-Not-Answer's specific harms: each harm has its
    own verbs and objects (its short name's words plus made-up topic words), a prompt is a template
    of its label filled with its harm's words and 0-3 filler words; safe prompts talk about the same
    harms (reporting, history, protection) and ordinary things. Planted: exact duplicates, near
    duplicates (one word changed) and label noise (a share of prompts with the other label)."""
    rng = np.random.default_rng(seed)
    syl = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "do", "fi", "gu", "ha", "je"]
    words = list(dict.fromkeys("".join(rng.choice(syl, size=int(rng.integers(2, 5)))) for _ in range(20000)))[:6000]
    leaves = dna_leaves()
    verbs = [list(rng.choice(words[:2000], size=12, replace=False)) for _ in leaves]
    objects = [code.split("_") + list(rng.choice(words[2000:4000], size=14, replace=False)) for code, _s in leaves]
    filler = words[4000:]
    label_draw = rng.random(n)
    leaf = rng.integers(len(leaves), size=n)
    tmpl = rng.integers(10, size=n)
    fill = rng.choice(filler, size=(n, 3))
    nfill = rng.integers(1, 4, size=n)
    va = rng.integers(12, size=n)
    ob = rng.integers(0, 1 << 30, size=(n, 2))
    rows = []
    for i in range(n):
        c = int(leaf[i])
        unsafe = label_draw[i] < unsafe_share
        label = "unsafe" if unsafe else ("unlabeled" if label_draw[i] > 1 - unlabeled_share else "safe")
        obj = objects[c]
        xs = list(fill[i][: nfill[i]]) + [""] * 3
        t = (UNSAFE_TEMPLATES if unsafe else SAFE_TEMPLATES)[int(tmpl[i])]
        text = t.format(a=verbs[c][int(va[i])], b=obj[int(ob[i, 0]) % len(obj)], c=obj[int(ob[i, 1]) % len(obj)],
                        x=xs[0], y=xs[1], z=xs[2])
        rows.append([f"m{i}", " ".join(text.split()), label, leaves[c][0] if unsafe else ""])
    n_exact, n_near, n_noise = int(n * exact_share), int(n * near_share), int(n * noise_share)
    picks = rng.choice(n, size=n_exact + n_near, replace=False)
    for m, j in enumerate(picks):
        t = int((j + 1 + rng.integers(n - 1)) % n)  # another row becomes a copy (of the label of its source)
        rows[t][1:] = rows[j][1:] if m < n_exact else [rows[j][1] + " " + str(rng.choice(filler)), *rows[j][2:]]
    for j in rng.choice(n, size=n_noise, replace=False):
        if rows[j][2] in ("safe", "unsafe"):  # label noise: the other label, no category
            rows[j][2], rows[j][3] = ("safe", "") if rows[j][2] == "unsafe" else ("unsafe", leaves[int(leaf[j])][0])
    first: dict[str, list[str]] = {}
    for r in rows:  # one text, one label and category (a file may not disagree with itself)
        r[2:] = first.setdefault(r[1], r)[2:]
    return rows


def write_rows(path: Path, rows: list[list[str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "label", "category"])
        w.writerows(rows)
    return path


def hashing_store(tmp: Path, rows: int, encoder: str):
    """A store under tmp of `realistic(rows)` generated prompts, embedded with hashing:384 as `encoder` (open; the caller closes it)."""
    from taxonomy_store.store import init_store

    csv = write_rows(Path(tmp) / "gen.csv", realistic(rows, seed=0))
    store = init_store(Path(tmp) / "store")
    store.encoders.add(encoder, "hashing:384")
    store.taxonomies.load("do-not-answer")
    store.imports.import_file(csv, taxonomy="do-not-answer")
    store.embeddings.embed(encoder)
    return store
