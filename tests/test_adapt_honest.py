"""Honest guard figures for an encoder tuned on the store (issue 25).

`tstore adapt` records the texts it trained on in the model folder; `calibrate` and `evaluate`
then call a figure held out only when it is computed on prompts the encoder never trained on,
and otherwise mark it contaminated, with a warning. The tuned encoders here are the tiny real
BERT of test_adapt.py, one optimiser step each: what is checked is bookkeeping, not quality.
The base encoder's calibration is checked against the figures it gave before any of this
existed (minilm on the demo store, commit dec6d9f).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from taxonomy_store.backend.training_manifest import MANIFEST, read_manifest, trained_mask
from taxonomy_store.store import Store
from taxonomy_store.text import text_sha256
from taxonomy_store.workflows.demo import build_demo_store

from test_adapt import tiny_model  # noqa: F401  (the session fixture: a 2-layer, 32-wide BERT)

pytestmark = pytest.mark.model  # tunes a small real BERT: the model tier


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory, tiny_model) -> Path:  # noqa: F811
    """The demo store with `tiny`, `tiny-all` (tuned on every prompt) and `tiny-held` (30 % held out), both
    `--no-everyday`."""
    d = tmp_path_factory.mktemp("honest") / "store"
    build_demo_store(d)
    s = Store.open(d)
    try:
        s.encoders.add("tiny", tiny_model)
        # without the built-in everyday requests, so that what each trained on is exactly the store's prompts
        s.adaptation.adapt("tiny", "tiny-all", epochs=1, max_steps=1, everyday=False)
        s.adaptation.adapt("tiny", "tiny-held", epochs=1, max_steps=1, holdout_fraction=0.3, seed=1, everyday=False)
    finally:
        s.close()
    return d


def _curated(s: Store):
    from taxonomy_store.adapt.data import read_curated

    with s.db.session() as session:
        return read_curated(session, taxonomy="do-not-answer", level="harm_type")


def _cli(store_dir: Path, *args: str):
    from taxonomy_store.cli import cli

    r = CliRunner().invoke(cli, ["--store", str(store_dir), *args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return r


def test_adapt_records_the_texts_it_trained_on_in_the_model_folder(trained_store):
    s = Store.open(trained_store)
    try:
        data = _curated(s)
        every = {text_sha256(t)[:16] for t in data.texts}
        info = s.encoders.get("tiny-all")
        record = read_manifest(info.model_path)
        assert (info.model_path / MANIFEST).is_file()
        assert set(record["trained_text_sha256"]) == every and record["trained_prompts"] == len(every) == len(data.ids)
        assert record["trained_prompt_ids"] == sorted(data.ids.tolist())
        assert record["held_out_prompts"] == 0 and record["holdout_fraction"] is None and record["inherited_from"] is None
        assert info.adaptation["trained_prompts"] == len(every) and info.adaptation["training_record"] == MANIFEST

        held = s.encoders.get("tiny-held")
        record = read_manifest(held.model_path)
        n_held = held.adaptation["held_out_prompts"]
        assert record["holdout_fraction"] == 0.3 and record["held_out_prompts"] == n_held and n_held > 0
        assert record["trained_prompts"] == len(data.ids) - n_held == len(record["trained_prompt_ids"])
        held_ids = set(data.ids.tolist()) - set(record["trained_prompt_ids"])
        assert len(held_ids) == n_held
        # the held-out texts are exactly those the record does not hold
        mask = trained_mask(held.model_path, [text_sha256(data.text(i)) for i in sorted(held_ids)])
        assert not mask.any()
        # a base model keeps no record
        assert read_manifest(s.encoders.get("tiny").model_path) is None
    finally:
        s.close()


def test_a_tuned_encoder_inherits_what_its_base_was_trained_on(trained_store):
    s = Store.open(trained_store)
    try:
        r = s.adaptation.adapt("tiny-held", "tiny-held-again", epochs=1, max_steps=1, holdout_fraction=0.5, seed=3, everyday=False)
        again = read_manifest(s.encoders.get("tiny-held-again").model_path)
        first = read_manifest(s.encoders.get("tiny-held").model_path)
        assert again["inherited_from"] == "tiny-held"
        assert set(first["trained_text_sha256"]) <= set(again["trained_text_sha256"])
        assert r.trained_prompts == len(again["trained_text_sha256"]) > first["trained_prompts"]
    finally:
        s.encoders.remove("tiny-held-again")
        s.close()


def test_calibrate_on_the_store_it_was_trained_on_calls_nothing_held_out(trained_store):
    r = _cli(trained_store, "calibrate", "-e", "tiny-all", "--json")
    cal = json.loads(r.stdout.strip().splitlines()[-1])
    assert cal["contaminated"] is True
    assert cal["trained_on"] == cal["n_reference"] == 620 and cal["never_trained"] == 0
    assert cal["held_out_basis"] == ("none: it was trained on 620 of these 620 prompts; 0 unsafe + 0 safe never-trained, "
                                     "fewer than 20 of each")
    assert cal["warnings"][0].startswith("no held-out figure for tiny-all: it was trained on 620 of these 620 prompts")
    assert cal["all_folds_auroc"] == cal["auroc"]
    text = _cli(trained_store, "calibrate", "-e", "tiny-all")
    assert "held-out folds" not in text.stdout and "held out on" not in text.stdout
    assert f"AUROC grouped-CV folds {cal['auroc']:.4f} NOT held out: tiny-all was trained on 620 of these 620 prompts" in text.stdout
    assert "out of fold, trained-on prompts (not held out): precision" in text.stdout
    assert "(best grouped-CV AUROC on trained-on prompts, NOT held out; grouped-CV AUROC on trained-on prompts, NOT held out:" in text.stdout
    assert "warning: no held-out figure for tiny-all" in text.stderr


def test_with_a_holdout_fraction_the_held_out_figure_is_on_exactly_the_never_trained_prompts(trained_store):
    from taxonomy_store.guard import calibration as calib
    from taxonomy_store.metrics.detection import auroc

    s = Store.open(trained_store)
    try:
        data = _curated(s)
        record = read_manifest(s.encoders.get("tiny-held").model_path)
        trained_ids = set(record["trained_prompt_ids"])
        judged = np.isin(data.labels, ["safe", "unsafe"])
        never = [(i, lab) for i, lab in zip(data.ids[judged].tolist(), data.labels[judged].tolist()) if i not in trained_ids]
        n_unsafe = sum(lab == "unsafe" for _, lab in never)
        cal = s.guard.calibrate("tiny-held")
        assert cal.contaminated is False and cal.never_trained == len(never) and cal.trained_on == 620 - len(never)
        assert cal.held_out_basis == (f"never-trained prompts (n={len(never)}: {n_unsafe} unsafe, {len(never) - n_unsafe} safe; "
                                      f"trained on {620 - len(never)})")
        assert cal.tp + cal.fn == n_unsafe and cal.fp + cal.tn == len(never) - n_unsafe
        # the same figure, recomputed from the out-of-fold scores of those prompts alone
        pool = s.neighbours.pool("tiny-held")
        ref = s.guard.reference(pool)
        oof, _ = calib.out_of_fold(ref, cal.k, cal.baseline, (cal.score,))
        fresh = ~np.isin(pool.prompt_ids[ref.rows], list(trained_ids))
        assert int(fresh.sum()) == len(never)
        assert cal.auroc == pytest.approx(auroc(oof[cal.score][fresh], ref.is_unsafe[fresh]), abs=1e-12)
        assert cal.all_folds_auroc == pytest.approx(auroc(oof[cal.score], ref.is_unsafe), abs=1e-12)
        assert cal.warnings == [w for w in cal.warnings if not w.startswith("no held-out figure")]
    finally:
        s.close()
    text = _cli(trained_store, "calibrate", "-e", "tiny-held").stdout
    assert f"AUROC held out on never-trained prompts (n={len(never)}:" in text and "held-out folds" not in text
    assert "out of fold, never-trained prompts: precision" in text


def test_evaluate_on_a_dataset_the_encoder_trained_on_says_it_is_not_held_out(trained_store):
    from taxonomy_store.cli.evaluate_cmds import print_evaluation

    s = Store.open(trained_store)
    try:
        run = s.evaluation.evaluate(encoder="tiny-all", holdout=["demo-pairs"])
        split = run.details["splits"][0]
        assert split["contaminated"] is True and split["trained_on"] == split["prompts"] > 0
        assert split["cv_contaminated"] is True
        run = s.evaluation.evaluate(encoder="tiny-held", holdout=["demo-pairs"])
        split = run.details["splits"][0]
        record = read_manifest(s.encoders.get("tiny-held").model_path)
        pool = s.neighbours.pool("tiny-held")
        xs = [int(p) for p in pool.prompt_ids if "demo-pairs" in pool.datasets[int(p)] and pool.rows[int(p)].label in ("safe", "unsafe")]
        never = [p for p in xs if p not in set(record["trained_prompt_ids"])]
        assert split["contaminated"] is False and split["prompts"] == len(never) > 0
        assert split["trained_on"] == len(xs) - len(never)
    finally:
        s.close()
    runner = CliRunner()
    with runner.isolation() as (out, _err, *_):
        print_evaluation(run)
    text = out.getvalue().decode()
    assert f"AUROC held out on never-trained held-out prompts (n={len(never)};" in text
    assert f"tiny-held was trained on {len(xs) - len(never)} of the held-out prompts: they are left out of the figures" in text


# minilm's calibration on the demo store before tuned encoders were told apart (commit dec6d9f)
BEFORE = {"auroc": 0.8694978632478633, "in_sample_auroc": 0.839551282051282, "threshold": 0.03518404906371034,
          "precision": 0.8429752066115702, "recall": 0.85, "fpr": 0.21923076923076923, "f1": 0.846473029045643,
          "band": 0.011374242182990574, "ood_similarity": 0.26765955382353346, "baseline": 0.06438063982033189}
BEFORE_COUNTS = {"tp": 306, "fp": 57, "fn": 54, "tn": 203, "n_reference": 620, "score": "knn-contrast"}
BEFORE_CV = {"knn-contrast": 0.8694978632478633, "knn-distance": 0.8589316239316239, "knn-share": 0.8483226495726496,
             "probe": 0.8659935897435898}


def test_a_base_encoder_calibrates_as_before(trained_store):
    r = _cli(trained_store, "calibrate", "-e", "minilm", "--json")
    cal = json.loads(r.stdout.strip().splitlines()[-1])
    for key, value in BEFORE.items():
        assert cal[key] == pytest.approx(value, abs=1e-6), key
    assert {k: cal[k] for k in BEFORE_COUNTS} == BEFORE_COUNTS
    assert {n: v["cv_auroc"] for n, v in cal["scorers"].items()} == pytest.approx(BEFORE_CV, abs=1e-6)
    assert cal["contaminated"] is False and cal["trained_on"] == 0 and cal["all_folds_auroc"] is None
    assert cal["held_out_basis"] == "grouped cross-validation (n=620)"
    text = _cli(trained_store, "calibrate", "-e", "minilm").stdout
    assert "AUROC held-out folds 0.8695   in-sample (leave-one-out) 0.8396\n" in text
    assert "out of fold: precision 0.8430  recall 0.8500  FPR 0.2192  F1 0.8465" in text


def test_metrics_of_a_tuned_encoder_beside_its_base_say_they_are_trained_on(trained_store):
    from taxonomy_store.cli.render_metrics import trained_on_note

    s = Store.open(trained_store)
    try:
        n = len(_curated(s).ids)
        runs = [r for r in s.metric_runs.latest() if r.encoder == "tiny-all" and r.metric != "evaluate"]
        assert {r.metric for r in runs} >= {"cp", "separation", "contrast", "detect"}
        for r in runs:
            assert r.details["trained_on"] == {"prompts": n, "of": n, "recorded": True, "held_out": False}
            assert trained_on_note(r) == (f"tiny-all was trained on {n} of the store's {n} prompts: "
                                          "these figures are trained on (in-sample), not held out")
        held = [r for r in s.metric_runs.latest() if r.encoder == "tiny-held" and r.metric == "cp"][0]
        assert held.details["trained_on"]["prompts"] == read_manifest(s.encoders.get("tiny-held").model_path)["trained_prompts"] < n
        assert all("trained_on" not in r.details for r in s.metric_runs.latest() if r.encoder in ("tiny", "minilm") and r.metric != "evaluate")
        ov = s.review.metrics_overview()
        assert ov.trained_on["tiny-all"] == f"trained on {n} of {n} prompts (not held out)"
        assert "tiny" not in ov.trained_on and "minilm" not in ov.trained_on
    finally:
        s.close()


def test_everyday_requests_train_beside_the_store_and_count_as_trained_on(trained_store):
    from taxonomy_store.adapt.data import everyday_texts

    _cli(trained_store, "adapt", "--from", "tiny", "--name", "tiny-everyday", "--epochs", "1", "--max-steps", "1")  # the default
    s = Store.open(trained_store)
    try:
        data, texts = _curated(s), everyday_texts()
        info, plain = s.encoders.get("tiny-everyday"), s.encoders.get("tiny-all")
        # the demo store already holds one of them ("Can you explain what a black hole is in simple terms?"): not doubled
        assert len(set(texts) & set(data.texts)) == 1
        assert info.adaptation["config"]["everyday"] is True and info.adaptation["everyday_texts"] == 319
        assert plain.adaptation["config"]["everyday"] is False and plain.adaptation["everyday_texts"] == 0
        sizes, plain_sizes = info.adaptation["training"]["sizes"], plain.adaptation["training"]["sizes"]
        assert sizes["geometry"] == plain_sizes["geometry"] + 319 and sizes["safe"] == plain_sizes["safe"] + 319
        assert sizes["pairs"] == plain_sizes["pairs"] and sizes["unsafe"] == plain_sizes["unsafe"]
        # an epoch is counted over the store's own prompts: the everyday requests cost no extra steps
        assert info.adaptation["training"]["steps_per_epoch"] == plain.adaptation["training"]["steps_per_epoch"]
        record = read_manifest(info.model_path)
        store_hashes = {text_sha256(t)[:16] for t in data.texts}
        assert set(record["trained_text_sha256"]) == store_hashes | {text_sha256(t)[:16] for t in texts}
        assert record["trained_prompt_ids"] == sorted(data.ids.tolist())  # the everyday texts are no prompts of the store
        # one of them imported later is no held-out prompt for this encoder; other new text is
        assert trained_mask(info.model_path, [text_sha256(texts[7]), text_sha256("A request nobody trained on.")]).tolist() == [True, False]
    finally:
        s.encoders.remove("tiny-everyday")
        s.close()


def test_a_combined_encoder_trained_on_what_its_tuned_part_trained_on(trained_store):
    """The guard that uses the base and the tuned encoder together (`encoder combine`) is no more held out than the tuned one."""
    from taxonomy_store.backend.training_manifest import trained_on

    s = Store.open(trained_store)
    try:
        s.encoders.combine("tiny-and-all", ["tiny", "tiny-all"])
        s.encoders.combine("tiny-and-held", ["tiny", "tiny-held"])
        data = _curated(s)
        hashes = [text_sha256(t) for t in data.texts]
        for combined, tuned in (("tiny-and-all", "tiny-all"), ("tiny-and-held", "tiny-held")):
            got, want = trained_on(s.encoders.get(combined), hashes), trained_on(s.encoders.get(tuned), hashes)
            assert got is not None and want is not None and got.recorded and (got.mask == want.mask).all()
        assert trained_on(s.encoders.get("tiny"), hashes) is None
        for name in ("tiny-and-all", "tiny-and-held"):
            s.embeddings.embed(name)
        everything = s.guard.calibrate("tiny-and-all")
        assert everything.contaminated is True and everything.trained_on == 620 and everything.never_trained == 0
        held, alone = s.guard.calibrate("tiny-and-held"), s.guard.calibrate("tiny-held")
        assert held.contaminated is False and (held.trained_on, held.never_trained) == (alone.trained_on, alone.never_trained)
        assert held.held_out_basis == alone.held_out_basis and held.held_out_basis.startswith("never-trained prompts (n=")
    finally:
        for name in ("tiny-and-all", "tiny-and-held"):
            s.encoders.remove(name)
        s.close()
