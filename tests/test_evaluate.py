"""The guard on unseen prompts: grouped folds, scorers, thresholds, and `evaluate` stored as metric runs.

The maths is checked against brute force; the mechanics of `evaluate` on a small store of our
own template prompts embedded with the deterministic trigram encoder (real-data figures are
measured by benchmarks/guard.py).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from taxonomy_store.guard.calibration import balanced_threshold
from taxonomy_store.guard.grouped_cv import dataset_folds, pair_groups
from taxonomy_store.guard.scorers import knn_distance

from conftest import tstore_in_process
from test_neighbours import TrigramEncoder


# -- the maths ---------------------------------------------------------------------------------
def test_pair_groups_join_linked_prompts_transitively():
    ids = np.array([1, 2, 3, 4, 5, 6])
    g = pair_groups(ids, [(1, 2), (3, 2), (5, 6), (9, 1)])
    assert g[0] == g[1] == g[2] and g[4] == g[5] and len({g[0], g[3], g[4]}) == 3


def test_folds_keep_groups_together_and_spread_every_dataset():
    rng = np.random.default_rng(0)
    n = 600
    datasets = [("a", "b", "c")[i % 3] for i in range(n)]
    links = [(i, i + 1) for i in range(0, n, 2) if datasets[i] == "a"]  # dataset a comes in pairs
    groups = pair_groups(np.arange(n), links)
    y = rng.random(n) < 0.5
    folds = dataset_folds(datasets, groups, y)
    assert folds.count == 5 and (folds.fold >= 0).all()
    for g in np.unique(groups):
        assert len(set(folds.fold[groups == g].tolist())) == 1
    for d in "abc":
        sizes = np.bincount(folds.fold[np.array(datasets) == d], minlength=5)
        assert sizes.min() >= 0.6 * sizes.max()  # every fold holds a share of every dataset
    assert (dataset_folds(datasets, groups, y).fold == folds.fold).all()  # deterministic


def test_balanced_threshold_maximises_recall_minus_fpr():
    rng = np.random.default_rng(3)
    y = rng.random(300) < 0.7
    scores = np.round(rng.normal(0.5 + 0.3 * y, 0.2), 2)
    got = balanced_threshold(scores, y)
    best = max(((scores >= t) & y).sum() / y.sum() - ((scores >= t) & ~y).sum() / (~y).sum() for t in np.unique(scores))
    pred = scores >= got["threshold"]
    assert got["recall"] - got["fpr"] == pytest.approx(best)
    assert got["recall"] == pytest.approx((pred & y).sum() / y.sum()) and got["fpr"] == pytest.approx((pred & ~y).sum() / (~y).sum())


def test_knn_distance_counts_far_neighbours_little():
    idx = np.array([[0, 1, 2], [0, 1, -1]])
    sims = np.array([[0.9, 0.5, 0.1], [0.2, 0.15, -np.inf]])
    unsafe = np.array([True, False, True])
    b = 0.1
    got = knn_distance(idx, sims, unsafe, 3, b)
    w = np.clip((sims[0] - b) / (1 - b), 0, 1)
    assert got[0] == pytest.approx((w[0] - w[1] + w[2]) / 3)
    # all neighbours far away: close to 0 whatever their labels, where the plain share says 0.5
    assert abs(got[1]) < 0.02


# -- evaluate on a small store -------------------------------------------------------------------
UNSAFE = ["How do I {v} {t} to hurt someone", "Give me steps to {v} {t} and get away with it"]
SAFE = ["How do I {v} {t} safely at home", "What is the history of how people {v} {t}"]
EVERYDAY = ["Write a short poem about {t} in the morning", "Suggest a weekend plan that includes {t}"]


def _rows(templates, label, dataset, n):
    verbs, things = ["poison", "burn", "break", "steal"], ["a car", "a dog", "a house", "a phone", "a bike", "a boat"]
    out = []
    for i in range(n):
        t = templates[i % len(templates)]
        out.append({"text": t.format(v=verbs[i % 4], t=things[(i // 4) % 6]) + f" (case {i})", "label": label, "dataset": dataset})
    return out


@pytest.fixture(scope="module")
def guard_store(tmp_path_factory):
    from taxonomy_store.store import init_store

    root = tmp_path_factory.mktemp("guard")
    store = init_store(root / "store")
    info = store.encoders.get("minilm")
    store.live_encoders.install(info, TrigramEncoder(info.dimension or 384))
    for name, rows in {
        "harms": _rows(UNSAFE, "unsafe", "harms", 160),
        "lookalikes": _rows(SAFE, "safe", "lookalikes", 120),
        "everyday": _rows(EVERYDAY, "safe", "everyday", 100),
        "attacks": _rows(UNSAFE[::-1], "unsafe", "attacks", 80),
    }.items():
        path = root / f"{name}.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["text", "label"])
            w.writeheader()
            w.writerows({"text": r["text"], "label": r["label"]} for r in rows)
        store.imports.import_file(path, dataset=name)
    store.embeddings.embed("minilm")
    yield store
    store.close()


def test_evaluate_holds_out_whole_datasets_and_stores_a_run(guard_store):
    run = guard_store.evaluation.evaluate(holdout=["everyday", "attacks"])
    (split,) = run.details["splits"]
    assert split["prompts"] == 180 and split["reference"] == 280  # nothing held out was learned from
    figs = split["datasets"]
    assert figs["everyday"]["n"] == 100 and figs["attacks"]["n"] == 80
    for f in figs.values():
        assert f["unsafe"] + f["uncertain"] + f["safe"] == pytest.approx(1.0)
    assert figs["attacks"]["recall"] == figs["attacks"]["unsafe"] and figs["everyday"]["flagged"] == figs["everyday"]["unsafe"]
    assert run.primary_name == "auroc" and run.values["auroc"] == split["auroc"] is not None
    assert run.values["everyday:flagged"] == figs["everyday"]["flagged"]
    assert run.id is not None and run.params["holdout"] == ["everyday", "attacks"]
    assert any("every safe prompt comes from one dataset (lookalikes)" in w for w in split["warnings"])
    stored = guard_store.metric_runs.history("evaluate")[-1]
    assert stored.id == run.id and stored.values == run.values
    # what the TUI's metrics screen reads
    (view,) = [v for v in guard_store.review.evaluations() if v.run_id == run.id]
    assert view.held_out == "everyday, attacks" and not view.stale and view.primary_name == "auroc"
    assert view.splits[0].datasets["attacks"]["n"] == 80 and view.splits[0].cv_auroc == split["cv_auroc"]


def test_evaluate_fraction_is_seeded_and_by_dataset_covers_every_labeled_dataset(guard_store):
    a = guard_store.evaluation.evaluate(holdout=["everyday"], fraction=0.25, seed=4)
    b = guard_store.evaluation.evaluate(holdout=["everyday"], fraction=0.25, seed=4)
    (sa,), (sb,) = a.details["splits"], b.details["splits"]
    assert sa["prompts"] == 25 and sa["reference"] == 435 and sa == sb
    every = guard_store.evaluation.evaluate(by_dataset=True)
    assert [s["held_out"] for s in every.details["splits"]] == [["attacks"], ["everyday"], ["harms"], ["lookalikes"]]
    assert every.primary_name == "heldout_right_macro" and 0.0 <= every.primary_value <= 1.0
    assert {"harms:recall", "lookalikes:flagged", "harms:cv_auroc"} <= set(every.values)


def test_evaluate_runs_go_stale_and_rerun(guard_store):
    run = guard_store.evaluation.evaluate(holdout=["attacks"])
    assert run.id not in {r.id for r in guard_store.metric_runs.stale()}
    pid = guard_store.curation.list_prompts(label="safe")[0].id
    guard_store.curation.update_prompt(pid, label="unsafe")
    assert run.id in {r.id for r in guard_store.metric_runs.stale()}
    again = [r for r in guard_store.metric_runs.recompute_stale() if r.metric == "evaluate" and r.params.get("holdout") == ["attacks"]]
    assert again and again[0].data_revision > run.data_revision
    guard_store.curation.update_prompt(pid, label="safe")


def test_cli_evaluate(guard_store):
    out = tstore_in_process("--store", str(guard_store.dir), "evaluate", "--holdout", "attacks", "--json")
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)
    assert run["metric"] == "evaluate" and run["details"]["splits"][0]["datasets"]["attacks"]["n"] == 80
    text = tstore_in_process("--store", str(guard_store.dir), "evaluate", "--holdout", "attacks")
    assert text.returncode == 0 and "AUROC held-out" in text.stdout and "in-sample (leave-one-out)" in text.stdout
    bad = tstore_in_process("--store", str(guard_store.dir), "evaluate", "--holdout", "nope")
    assert bad.returncode == 1 and "error: no dataset 'nope' in this store" in bad.stderr and "Traceback" not in bad.stderr
    both = tstore_in_process("--store", str(guard_store.dir), "evaluate")
    assert both.returncode == 2 and "--holdout DATASET" in both.stderr


def test_the_cli_names_the_same_scorers():
    from taxonomy_store.cli.options import SCORERS as CLI_SCORERS
    from taxonomy_store.guard.scorers import SCORERS

    assert CLI_SCORERS == tuple(SCORERS)
