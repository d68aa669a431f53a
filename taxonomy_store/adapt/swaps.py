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

import math
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


# Aimed swaps ("target" swaps): keep the word that makes a prompt look harmful, change what it is aimed at.
# "How do I kill my neighbour?" -> "How do I kill my teapot?": the encoder must notice the object, not only
# the violent word, which is what a safe look-alike ("kill a mosquito", "kill time") differs by.
_DETERMINERS = frozenset({"a", "an", "the", "my", "your", "this", "that", "some", "our", "their", "his", "her"})
# Function words of four letters or more: never a target (swapping "from" or "your" changes nothing it aims at).
_FUNCTION_WORDS = _DETERMINERS | frozenset(
    "about above after again against also because been before being below between both could does doing down during "
    "each every from have having here into itself just more most much only other over same should such than them "
    "then there these they those through under until very were what when where which while whom whose will with "
    "without would".split())


def harm_scores(unsafe: list[str], safe: list[str]) -> dict[str, float]:
    """word (lower case, letters only, four or more) -> log-odds that a text holding it is unsafe rather
    than safe (document frequencies, add-one smoothed, each side's size taken out)."""
    def df(texts: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in texts:
            for w in {_core(x).lower() for x in t.split() if _is_word(x)}:
                out[w] = out.get(w, 0) + 1
        return out

    du, ds = df(unsafe), df(safe)
    nu, ns = len(unsafe) + 2, len(safe) + 2
    return {w: math.log((du.get(w, 0) + 1) / nu) - math.log((ds.get(w, 0) + 1) / ns) for w in sorted(set(du) | set(ds))}


def object_pool(texts: list[str], scores: dict[str, float], min_count: int = 2) -> list[str]:
    """Everyday objects to aim a swap at: words (lower case) that stand after a determiner ("a", "the",
    "my", ...) in at least min_count of texts and in most of the texts they appear in (mostly nouns, not
    the adjectives that only sometimes do), and that lean safe (harm score 0 or less; unknown: 0), sorted."""
    after: dict[str, int] = {}
    seen: dict[str, int] = {}
    for t in texts:
        words = t.split()
        for w in {_core(x).lower() for x in words if _is_word(x)}:
            seen[w] = seen.get(w, 0) + 1
        for w in {_core(w).lower() for prev, w in zip([""] + words, words) if prev.lower() in _DETERMINERS and _is_word(w)}:
            after[w] = after.get(w, 0) + 1
    return sorted(w for w, n in after.items() if n >= min_count and 2 * n > seen[w] and scores.get(w, 0.0) <= 0.0)


def target_word(text: str, scores: dict[str, float]) -> int | None:
    """Index (in text.split()) of the word an aimed swap replaces: the first word (letters only, four or
    more, not a function word) after the text's most harm-leaning one, else the nearest before it; None
    with fewer than two such words in the first MAX_POSITION."""
    words = text.split()
    places = [i for i, w in enumerate(words[:MAX_POSITION]) if _is_word(w) and _core(w).lower() not in _FUNCTION_WORDS]
    if len(places) < 2:
        return None
    harm = max(places, key=lambda i: (scores.get(_core(words[i]).lower(), 0.0), -i))
    after = [i for i in places if i > harm]
    return after[0] if after else max(i for i in places if i < harm)


def target_swaps(texts: list[str], scores: dict[str, float], pool: list[str], seed: int) -> dict[str, str]:
    """text -> the text with its target_word replaced by a different word of pool (its punctuation kept).
    Texts without a target word, or with no other pool word, are left out."""
    rng = random.Random(seed)
    out: dict[str, str] = {}
    for text in sorted(set(texts)):
        i = target_word(text, scores)
        if i is None:
            continue
        words = text.split()
        old = _core(words[i])
        others = [w for w in pool if w != old.lower()]
        if not others:
            continue
        words[i] = words[i].replace(old, rng.choice(others), 1)
        out[text] = " ".join(words)
    return out
