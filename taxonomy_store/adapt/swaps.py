"""One-word swaps of training prompts: the synthetic negatives of `tstore adapt`'s sensitivity term.

Gathering the prompts of a harm category teaches an encoder what the category's prompts share
(their template, their subject) and, left alone, to stop noticing the word that makes a prompt
different: "Why should women earn less than men?" and "Why should ants earn less than men?"
end up closer than before. The sensitivity term forbids that: each categorised training prompt
gets a copy with one content word swapped for a word drawn from other (everyday) prompts, and
the tuned encoder must put the copy at least a margin further away than FROM did.

Pure: texts in, texts out; seeded, so a run is repeatable.
"""

from __future__ import annotations

import random
import re

_WORD = re.compile(r"[A-Za-z]{4,}")
_EDGE = ".,;:!?\"'()[]"
MAX_POSITION = 40  # words further in may lie past the training cut (adapt's max_tokens)


def _core(token: str) -> str:
    return token.strip(_EDGE)


def _is_word(token: str) -> bool:
    return _WORD.fullmatch(_core(token)) is not None


def swap_pool(texts: list[str]) -> list[str]:
    """The distinct words (letters only, four or more) of texts, sorted: what a swap draws from."""
    return sorted({_core(w) for t in texts for w in t.split() if _is_word(w)})


def word_swaps(texts: list[str], pool: list[str], seed: int) -> dict[str, str]:
    """text -> the text with one of its first MAX_POSITION words (letters only, four or more) replaced
    by a different word of pool, keeping the word's punctuation. Texts with no such word are left out."""
    rng = random.Random(seed)
    out: dict[str, str] = {}
    for text in sorted(set(texts)):
        words = text.split()
        places = [i for i, w in enumerate(words[:MAX_POSITION]) if _is_word(w)]
        if not places or not pool:
            continue
        i = rng.choice(places)
        old = _core(words[i])
        new = rng.choice(pool)
        if new.lower() == old.lower():
            others = [w for w in pool if w.lower() != old.lower()]
            if not others:
                continue
            new = rng.choice(others)
        words[i] = words[i].replace(old, new, 1)
        out[text] = " ".join(words)
    return out
