"""Suspects by confident learning: out-of-sample probabilities and per-class thresholds find flipped
labels on imbalanced data, and on the shared-data store the prompts a curator mislabelled."""

from __future__ import annotations

import numpy as np
import pytest

from taxonomy_store.guard.grouped_cv import pair_groups
from taxonomy_store.curation.label_issues import class_thresholds, confident_issues, out_of_sample_probabilities


def blobs(n0: int, n1: int, flips: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=(2, 16))
    x = np.vstack([centre[0] + 0.9 * rng.normal(size=(n0, 16)), centre[1] + 0.9 * rng.normal(size=(n1, 16))])
    y = np.array([0] * n0 + [1] * n1)
    flipped = np.concatenate([rng.choice(n0, flips, replace=False), n0 + rng.choice(n1, flips, replace=False)])
    y[flipped] = 1 - y[flipped]
    return x, y, set(flipped.tolist())


def test_confident_learning_finds_flipped_labels_on_imbalanced_data():
    x, y, flipped = blobs(400, 80, 4)
    probs = out_of_sample_probabilities(x, y)
    assert probs.shape == (480, 2) and np.allclose(probs.sum(axis=1), 1.0)
    t = class_thresholds(probs, y)
    assert t[0] == pytest.approx(probs[y == 0, 0].mean()) and t[1] == pytest.approx(probs[y == 1, 1].mean())
    issues = confident_issues(probs, y)
    found = {i.row for i in issues}
    assert len(found & flipped) >= 7  # of 8
    assert len(found - flipped) <= 4
    assert [i.p_given for i in issues] == sorted(i.p_given for i in issues)
    for i in issues:
        assert i.suggested == 1 - i.given and i.p_suggested >= t[i.suggested]


def test_the_probe_is_sklearns_cross_val_predict_below_the_cap_and_still_finds_the_flips_above_it():
    """Below `fit_rows` the fold loop gives what cross_val_predict gave (the paper store's suspects do
    not move); above it each fold's probe sees a stratified sample, and every row is still scored out of sample."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    from taxonomy_store.curation import label_issues as li

    x, y, flipped = blobs(400, 80, 4)
    before = cross_val_predict(LogisticRegression(C=li.C, max_iter=2000), x, y,
                               cv=StratifiedKFold(n_splits=li.FOLDS, shuffle=True, random_state=li.SEED), method="predict_proba")
    assert np.allclose(out_of_sample_probabilities(x, y), before, atol=1e-9)
    sampled = out_of_sample_probabilities(x, y, fit_rows=120)  # each probe fitted on 120 of ~384 rows
    assert sampled.shape == (480, 2) and np.allclose(sampled.sum(axis=1), 1.0)
    assert not np.allclose(sampled, before)  # the sample is what the probes saw
    found = {i.row for i in confident_issues(sampled, y)}
    assert len(found & flipped) >= 7 and len(found - flipped) <= 6
    rows = li.fit_sample(np.arange(480), y, 120, np.random.default_rng(0))
    assert len(rows) == 120 and abs(int(y[rows].sum()) - 20) <= 1  # each label in its share (80 of 480)


def test_pair_groups_join_both_sides():
    ids = np.array([10, 11, 12, 13, 14])
    g = pair_groups(ids, [(10, 12), (12, 14), (99, 11)])
    assert g[0] == g[2] == g[4] and len({g[0], g[1], g[3]}) == 3


@pytest.mark.slow
def test_label_issues_on_the_store_find_a_curators_slips(tui_store):
    vs = tui_store.embeddings.load_vectors("minilm")
    labels = {p.id: p.label for p in tui_store.curation.list_prompts()}
    keep = np.array([labels.get(int(i)) in ("safe", "unsafe") for i in vs.prompt_ids])
    ids, x = vs.prompt_ids[keep], vs.vectors[keep]
    y = np.array([int(labels[int(i)] == "unsafe") for i in ids])
    probs = out_of_sample_probabilities(x, y, pair_groups(ids, [(p.unsafe_prompt_id, p.safe_prompt_id) for p in tui_store.curation.list_pairs()]))
    # three clearly unsafe prompts (the probe is surest of them) relabelled safe by mistake
    surest = [int(ids[j]) for j in np.argsort(-probs[:, 1]) if y[j] == 1][:3]
    unsafe = [tui_store.curation.get_prompt(i) for i in surest]
    for p in unsafe:
        tui_store.curation.update_prompt(p.id, label="safe")
    after = tui_store.review.label_issues("minilm", limit=1000)
    by_id = {i.prompt.id: i for i in after}
    for p in unsafe:
        assert by_id[p.id].suggested_label == "unsafe" and by_id[p.id].prompt.label == "safe"
        assert by_id[p.id].twin_pair is not None  # every XSTest prompt is a side of a pair
    pairs = {q.id for q in tui_store.curation.list_pairs()}
    assert all(i.twin_pair in pairs for i in after if i.twin_pair)
    # far fewer than raw neighbour disagreement flags
    raw = tui_store.review.suspects("minilm", by="label", taxonomy="xstest-pair-types", limit=1000)
    assert len(after) < len(raw)
