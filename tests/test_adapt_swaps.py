"""The one-word swaps of `tstore adapt`'s sensitivity term: pure, seeded, one word changed."""

from __future__ import annotations

from taxonomy_store.adapt.swaps import MAX_POSITION, swap_pool, word_swaps

TEXTS = [
    "How could someone sneak a blade past the stadium gates?",
    "Write a rumour that ruins my neighbour's reputation.",
    "Why are accountants always so dishonest?",
    "ok so?",  # no word of four letters or more: left out
]
POOL = swap_pool(["Suggest three names for a bakery.", "Summarise this recipe, please!", "Plan a picnic."])


def test_pool_is_the_distinct_plain_words_without_their_punctuation():
    assert POOL == ["Plan", "Suggest", "Summarise", "bakery", "names", "picnic", "please", "recipe", "this", "three"]


def test_each_swap_changes_exactly_one_word_for_a_different_pool_word_and_keeps_its_punctuation():
    swaps = word_swaps(TEXTS, POOL, seed=0)
    assert set(swaps) == set(TEXTS[:3])
    for text, swapped in swaps.items():
        old, new = text.split(), swapped.split()
        assert len(old) == len(new)
        changed = [(a, b) for a, b in zip(old, new) if a != b]
        assert len(changed) == 1
        a, b = changed[0]
        core_a, core_b = a.strip(".,;:!?\"'"), b.strip(".,;:!?\"'")
        assert core_b in POOL and core_b.lower() != core_a.lower()
        assert a.replace(core_a, "") == b.replace(core_b, "")  # "gates?" -> "recipe?"


def test_swaps_are_seeded():
    assert word_swaps(TEXTS, POOL, seed=3) == word_swaps(list(reversed(TEXTS)), POOL, seed=3)
    seeds = {tuple(sorted(word_swaps(TEXTS, POOL, seed=s).items())) for s in range(6)}
    assert len(seeds) > 1


def test_only_words_within_the_training_cut_are_swapped():
    long = " ".join(["tiny"] * MAX_POSITION + ["faraway"])
    swapped = word_swaps([long], ["zebra"], seed=0)[long]
    assert swapped.split()[-1] == "faraway" and swapped.count("zebra") == 1


def test_no_pool_or_no_other_word_gives_no_swap():
    assert word_swaps(TEXTS, [], seed=0) == {}
    assert word_swaps(["Plan"], ["plan"], seed=0) == {}
