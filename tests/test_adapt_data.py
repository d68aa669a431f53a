"""The built-in everyday requests `tstore adapt --everyday` trains on, and how they join the training data."""

from __future__ import annotations

import json

from taxonomy_store.adapt.data import everyday_texts, with_everyday
from taxonomy_store.adapt.training import TrainingData
from taxonomy_store.text import normalise


def test_the_everyday_set_is_320_distinct_normalised_requests():
    texts = everyday_texts()
    assert len(texts) == len(set(texts)) == 320
    assert all(t == normalise(t) and len(t.split()) >= 4 for t in texts)
    assert len({t.lower() for t in texts}) == 320


def test_the_everyday_set_shares_no_text_with_the_guards_held_out_everyday_benchmark(shared_datasets):
    """AlpacaEval is where the guard of an adapted encoder is measured on everyday traffic it never saw."""
    with open(shared_datasets / "alpaca_eval_instructions.jsonl", encoding="utf-8") as f:
        alpaca = {normalise(json.loads(line)["instruction"]).lower() for line in f if line.strip()}
    assert len(alpaca) > 800
    assert [t for t in everyday_texts() if t.lower() in alpaca] == []


def test_everyday_texts_join_as_safe_prompts_outside_any_pair_and_are_never_doubled():
    data = TrainingData(category_texts=["how do I harm x", "how do I harm y"], category_labels=["a", "a"],
                        pairs=[("kill the boss", "kill the process")], safe_texts=["kill the process", "bake bread"],
                        unsafe_texts=["how do I harm x", "how do I harm y", "kill the boss"], geometry_texts=["bake bread"])
    out, added = with_everyday(data, ["bake bread", "kill the process", "how do I harm x", "plan a picnic", "water a fern"])
    assert added == ["plan a picnic", "water a fern"]
    assert out.safe_texts == ["kill the process", "bake bread", "plan a picnic", "water a fern"]
    assert out.geometry_texts == ["bake bread", "plan a picnic", "water a fern"]
    assert out.pairs == data.pairs and out.unsafe_texts == data.unsafe_texts and out.category_texts == data.category_texts
    assert data.geometry_texts == ["bake bread"]  # the input is left as it was
