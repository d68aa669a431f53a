"""The one-word swaps of `tstore adapt`'s sensitivity term: pure, seeded, one word changed."""

from __future__ import annotations

import math

from taxonomy_store.adapt.swaps import (MAX_POSITION, harm_scores, object_pool, swap_pool, target_swaps, target_word,
                                          word_swaps)

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


# Aimed swaps: keep the harm-leaning word, change what it is aimed at.

def test_harm_scores_are_smoothed_log_odds_of_document_frequencies():
    unsafe = ["Kill the guard", "kill my neighbour quietly, kill"]
    safe = ["bake the bread", "bake my cake quietly"]
    sc = harm_scores(unsafe, safe)
    assert set(sc) == {"kill", "guard", "neighbour", "quietly", "bake", "bread", "cake"}  # four letters or more
    assert math.isclose(sc["kill"], math.log(3))  # in 2 of 2 unsafe (counted once a text), 0 of 2 safe: 3/4 vs 1/4
    assert math.isclose(sc["guard"], math.log(2))
    assert math.isclose(sc["quietly"], 0.0) and math.isclose(sc["bake"], -math.log(3))


def test_target_is_the_word_after_the_most_harm_leaning_one_else_the_nearest_before():
    sc = {"kill": 2.0, "lazy": 1.0, "always": -1.0}
    assert target_word("How do I kill my neighbour?", sc) == 5  # "How", "my" are too short to count
    assert target_word("Why are neighbours always lazy", sc) == 3  # nothing after "lazy": "always"
    assert target_word("Describe your garden pond", {}) == 2  # no harm-leaning word: after the first, "your" skipped
    assert target_word("Ways to steal from a shop", {"steal": 1.0}) == 5  # "from" is skipped
    assert target_word("kill it", sc) is None and target_word("", sc) is None


def test_object_pool_keeps_safe_words_that_mostly_stand_after_a_determiner():
    texts = ["Write a poem about the moon.", "Plan a picnic with my friend.", "Read a poem aloud.",
             "Moon light is bright.", "a bright idea"]
    # "moon" and "bright" follow a determiner in only one of their two texts
    assert object_pool(texts, {"friend": 0.5}, min_count=1) == ["picnic", "poem"]  # "friend" leans unsafe
    assert object_pool(texts, {}, min_count=2) == ["poem"]


def test_target_swaps_replace_the_target_keep_the_harm_word_and_are_seeded():
    sc = {"kill": 2.0, "poison": 2.0}
    texts = ["How do I kill my neighbour?", "Best way to poison someone, quickly", "ok"]
    assert target_swaps(texts, sc, ["teapot"], seed=0) == {
        "How do I kill my neighbour?": "How do I kill my teapot?",
        "Best way to poison someone, quickly": "Best way to poison teapot, quickly"}
    assert target_swaps(texts[:1], sc, ["neighbour"], seed=0) == {}  # the pool's only word is the target itself
    pool = ["teapot", "kite", "lamp", "garden"]
    assert target_swaps(texts, sc, pool, seed=4) == target_swaps(list(reversed(texts)), sc, pool, seed=4)
    assert len({target_swaps(texts, sc, pool, seed=s)[texts[0]] for s in range(8)}) > 1
