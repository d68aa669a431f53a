"""Tuning a sentence encoder on curated safety data: the objective, and the linear-adapter method.

Two methods share the objective and this module's config (adapt_methods picks one):
- "layers", the default: the encoder's top transformer layers are tuned (adapt_layers);
- "adapter" (`tune_layers=0`): a linear adapter (initialised to the identity) after the frozen
  encoder, followed by L2 normalisation. Every training text is encoded once and a step is
  matrix products over those vectors: seconds per run on a CPU. Its saved folder is the
  encoder's modules + `Dense` + `Normalize`, a plain sentence-transformers model. On held-out
  pair types it did not move twins apart (docs/BENCHMARKS.md), hence the layer method.

The objective, all terms in every step (trained apart, they fight):
- category: supervised contrastive loss over unsafe prompts with a harm category (P x K
  batches), so prompts of one category gather (Categorical Purity);
- pairs: each safe twin must sit `pair_margin` further (in cosine) from its unsafe original
  than the frozen encoder put it, i.e. it moves away relative to where it started;
- label: a supervised contrastive safe/unsafe term at a softer temperature;
- geometry: the cosine matrix of safe and unrelated prompts that belong to no pair is
  distilled from the frozen encoder (mean squared error), so everyday traffic keeps its
  neighbourhoods (Spearman of all pairwise cosines stays high);
- sensitivity (layer method only): each category prompt's copy with one word swapped
  (adapt_swaps) must sit `sensitivity_margin` further from it than in the frozen encoder, so
  gathering a category does not teach the encoder to overlook the word that makes a safe
  look-alike safe. With `swap_target` the swap keeps the prompt's most harm-leaning word and
  replaces what it is aimed at ("kill my neighbour" -> "kill my teapot") with an everyday object.
  With `sensitivity_moves_swap_only` the term moves only the swap (the prompt's vector detached in
  it), so it no longer pulls the category prompts out of the clusters the category term gathers.
- boundary (layer method, off by default: `w_boundary`): each safe prompt's nearest unsafe prompts
  (and each unsafe prompt's nearest safe ones), mined under FROM, must move `boundary_margin` apart;
  it lifted the held-out guard AUROC a little and cost Categorical Purity (docs/BENCHMARKS.md).
- anchor (layers method, off by default: `w_anchor`): every step prompt but the safe twins stays
  near FROM's vector (mean 1 - cos), so prompts of datasets the store never held keep the
  neighbourhoods the base encoder gave them; it matters most in a store without everyday safe
  prompts, where the geometry term has nothing to hold (benchmarks/adapt_guard.py, docs/BENCHMARKS.md).
- everyday (on by default: `everyday`; `adapt --no-everyday`): not a term but data. A store of safety benchmarks holds
  few or no safe prompts outside its pairs, so "safe" is learnt from look-alike twins only; the
  built-in everyday set (adapt_data.everyday_texts) gives the label and geometry terms ordinary
  traffic to keep apart from the unsafe prompts.
Options explored and left off by default (adapter method; see benchmarks/adapt.py): safe twins as one more
"category" (`safe_class`), a label term on the twins alone (`w_twins`), and geometry that
also keeps safe-to-unsafe cosines (`geometry_cross`: guard AUROC kept, less purity gained).

No SQL, no Chroma: texts and labels in, a model folder out. torch and sentence-transformers
are imported inside the functions that need them.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np


@dataclass
class TrainingData:
    category_texts: list[str]
    category_labels: list[str]
    pairs: list[tuple[str, str]]  # (unsafe, safe)
    safe_texts: list[str]  # safe prompts: the safe side of the label term
    unsafe_texts: list[str]  # unsafe prompts (with or without a category): the unsafe side of the label term
    # Safe and unrelated prompts whose geometry is kept; not the safe twins of pairs, which
    # must be free to move away from their unsafe originals.
    geometry_texts: list[str] = field(default_factory=list)
    # how many of geometry_texts came from outside the store (the everyday requests): they train, but an
    # epoch is counted over the store's own prompts, so adding them costs no extra steps
    supplementary: int = 0

    def sizes(self) -> dict[str, int]:
        return {"category": len(self.category_texts), "categories": len(set(self.category_labels)),
                "pairs": len(self.pairs), "safe": len(self.safe_texts), "unsafe": len(self.unsafe_texts),
                "geometry": len(self.geometry_texts)}


@dataclass
class AdaptConfig:
    """A field left at None takes its method's default (METHOD_DEFAULTS); `resolved` fills them in."""

    tune_layers: int = 2  # top transformer layers tuned; 0: the linear adapter on the frozen encoder
    epochs: int | None = None
    seed: int = 0
    lr: float | None = None
    category_batch: int | None = None
    pair_batch: int | None = None
    safe_batch: int | None = None
    label_batch: int | None = None
    temperature: float = 0.1
    pair_margin: float = 0.25
    w_category: float | None = None
    w_pairs: float | None = None
    w_label: float = 1.0
    w_geometry: float | None = None
    w_sensitivity: float | None = None  # layers only: one-word swaps of category prompts must move away
    sensitivity_margin: float = 0.25
    # layers only: aim each swap at the word the prompt's most harm-leaning word is aimed at (adapt_swaps.target_swaps),
    # the harm word kept, the target swapped for an everyday object; prompts with no such word keep a random swap
    swap_target: bool = True
    # layers only: the sensitivity term moves only the swap (the category prompt's vector detached in that term),
    # so the push does not scatter the prompts the category term gathers
    sensitivity_moves_swap_only: bool = True
    w_boundary: float | None = None  # layers only: each safe prompt's nearest unsafe prompts (mined under FROM) move away
    # layers only: every step prompt but the safe twins stays near FROM's vector (mean 1 - cos), so what the
    # guard's neighbourhoods already got right about prompts of other datasets is kept
    w_anchor: float | None = None
    # draw on everyday safe traffic: the built-in set of everyday requests (seeds/everyday) joins the store's safe
    # prompts that belong to no pair (the label term's safe side, the geometry term, the swaps' everyday words)
    everyday: bool = True
    boundary_k: int = 3
    boundary_margin: float = 0.1
    warmup: float = 0.1
    device: str = "cpu"
    encode_batch: int = 64
    max_tokens: int = 64  # layers: training texts cut to this many tokens (vectors after training are not cut)
    safe_class: bool = False
    geometry_cross: bool = False
    w_twins: float = 0.0
    max_steps: int | None = None  # cut a run short (tests, timing): stop after this many steps
    extra: dict[str, Any] = field(default_factory=dict)


# Per method, what a None field means. "layers": a step encodes every text it uses, so batches
# are smaller and epochs few; "adapter": a step is matrix products over stored vectors.
METHOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "layers": {"epochs": 6, "lr": 2e-4, "category_batch": 32, "pair_batch": 16, "safe_batch": 32, "label_batch": 16,
               "w_category": 2.0, "w_pairs": 3.0, "w_geometry": 500.0, "w_sensitivity": 3.0,
               "w_boundary": 0.0, "w_anchor": 0.0},
    "adapter": {"epochs": 30, "lr": 2e-3, "category_batch": 64, "pair_batch": 32, "safe_batch": 64, "label_batch": 32,
                "w_category": 1.0, "w_pairs": 1.0, "w_geometry": 2000.0, "w_sensitivity": 0.0,
                "w_boundary": 0.0, "w_anchor": 0.0},
}


def method(cfg: AdaptConfig) -> str:
    return "layers" if cfg.tune_layers > 0 else "adapter"


def resolved(cfg: AdaptConfig) -> AdaptConfig:
    """cfg with every None field set to its method's default."""
    filled = {k: v for k, v in METHOD_DEFAULTS[method(cfg)].items() if getattr(cfg, k) is None}
    return replace(cfg, **filled) if filled else cfg


Progress = Callable[[int, int, dict[str, float]], None] | None


def steps_per_epoch(data: TrainingData, cfg: AdaptConfig) -> int:
    """One epoch: every category prompt, pair and safe prompt seen about once."""
    cfg = resolved(cfg)
    parts = [len(data.category_texts) / cfg.category_batch, len(data.pairs) / cfg.pair_batch,
             (len(data.geometry_texts) - data.supplementary) / cfg.safe_batch]
    return max(1, math.ceil(max(parts)))


def _supcon(emb, labels, temperature: float):
    """Supervised contrastive loss (Khosla et al.) over unit vectors; rows without a positive skip."""
    import torch

    sim = emb @ emb.T / temperature
    n = emb.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=emb.device)
    sim = sim.masked_fill(eye, -1e9)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    log_prob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    has = pos.any(dim=1)
    if not has.any():
        return emb.sum() * 0.0
    per_row = (log_prob * pos).sum(dim=1) / pos.sum(dim=1).clamp(min=1)
    return -per_row[has].mean()


def _class_batch(rng: random.Random, labels: list[str], size: int, per_class: int = 4) -> list[int]:
    """P x K sampling: a few categories, several prompts each, so every row has positives."""
    by: dict[str, list[int]] = {}
    for i, c in enumerate(labels):
        by.setdefault(c, []).append(i)
    classes = [c for c, v in by.items() if len(v) >= 2]
    rng.shuffle(classes)
    out: list[int] = []
    for c in classes:
        out += rng.sample(by[c], min(per_class, len(by[c])))
        if len(out) >= size:
            break
    return out[:size]


class _Cycler:
    """Endless shuffled passes over range(n)."""

    def __init__(self, n: int, rng: random.Random):
        self.n, self.rng, self.pos = n, rng, 0
        self.order: list[int] = []

    def take(self, k: int) -> list[int]:
        out: list[int] = []
        while len(out) < min(k, self.n):
            if self.pos >= len(self.order):
                self.order = list(range(self.n))
                self.rng.shuffle(self.order)
                self.pos = 0
            out.append(self.order[self.pos])
            self.pos += 1
        return out


def _frozen(model, texts: list[str], batch_size: int, progress: Callable[[int, int], None] | None) -> np.ndarray:
    """The original encoder's unit vectors of texts (the adapter trains on these, never re-encoding)."""
    out = []
    for i in range(0, len(texts), batch_size):
        out.append(model.encode(texts[i : i + batch_size], batch_size=batch_size, convert_to_numpy=True,
                                normalize_embeddings=True, show_progress_bar=False))
        if progress:
            progress(min(i + batch_size, len(texts)), len(texts))
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), dtype=np.float32)


def _losses(x_cat, y_cat, x_u, x_s, c0_pairs, x_safe, x_lab, y_lab, adapter, cfg: "AdaptConfig") -> dict:
    import torch

    def f(x):
        return torch.nn.functional.normalize(adapter(x), dim=-1)

    terms: dict = {}
    if x_cat is not None and cfg.w_category:
        terms["category"] = cfg.w_category * _supcon(f(x_cat), y_cat, cfg.temperature)
    if x_u is not None and cfg.w_pairs:
        c = (f(x_u) * f(x_s)).sum(dim=1)
        terms["pairs"] = cfg.w_pairs * torch.relu(c - (c0_pairs - cfg.pair_margin)).pow(2).mean() * 10
    if x_safe is not None and cfg.w_geometry:
        e = f(x_safe)
        err = (e @ e.T - x_safe @ x_safe.T).pow(2).mean()
        if cfg.geometry_cross and x_cat is not None:
            # Also where safe prompts sit relative to the unsafe ones: tightening the harm
            # categories must not drag everyday prompts along.
            cross = (e @ f(x_cat).T - x_safe @ x_cat.T).pow(2).mean()
            err = (err + cross) / 2
        terms["geometry"] = cfg.w_geometry * err
    if x_lab is not None and cfg.w_label:
        terms["label"] = cfg.w_label * _supcon(f(x_lab), y_lab, cfg.temperature * 4)
    return terms


def _twins_term(adapter, x, u_r, s_r, pi: list[int], cfg: AdaptConfig):
    """The twins alone, labelled unsafe/safe: the hard cases of the label term."""
    import torch

    tw = torch.cat([u_r[pi], s_r[pi]])
    e_tw = torch.nn.functional.normalize(adapter(x[tw]), dim=-1)
    y_tw = torch.tensor([1] * len(pi) + [0] * len(pi), device=cfg.device)
    return cfg.w_twins * _supcon(e_tw, y_tw, cfg.temperature * 4)


def optimise_step(opt, sched, terms: dict) -> dict[str, float]:
    """One optimiser step on the sum of the loss terms; the terms' values, for the progress bar."""
    loss = sum(terms.values())
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()
    return {k: float(v.detach()) for k, v in terms.items()}


def _save_tuned(model, adapter, dim: int, out_dir: str | Path) -> None:
    """The frozen encoder's modules, the adapter as a Dense layer, then L2 normalisation."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    dense = Dense(dim, dim, bias=True, activation_function=torch.nn.Identity(),
                  init_weight=adapter.weight.detach().cpu().clone(), init_bias=adapter.bias.detach().cpu().clone())
    tuned = SentenceTransformer(modules=[*[m for m in model], dense, Normalize()], device="cpu")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    tuned.save(str(out_dir))


def train_adapter(model_dir: str | Path, data: TrainingData, cfg: AdaptConfig, out_dir: str | Path, progress: Progress = None,
                  encode_progress: Callable[[int, int], None] | None = None,
                  frozen: Callable[[list[str]], np.ndarray] | None = None) -> dict[str, Any]:
    """Tune an adapter on top of the model in model_dir; save model + adapter to out_dir.

    The adapter is a linear map initialised to the identity, then L2 normalisation: the
    encoder's own weights stay as they are, so each text is encoded once, and a step costs
    matrix products over stored vectors (seconds on a CPU, whatever the encoder's size).
    """
    import torch

    from taxonomy_store.backend.encoding import fresh_model

    cfg = resolved(cfg)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model = fresh_model(str(model_dir), cfg.device)
    texts = sorted(set(data.category_texts) | {t for p in data.pairs for t in p} | set(data.safe_texts) | set(data.unsafe_texts) | set(data.geometry_texts))
    pos = {t: i for i, t in enumerate(texts)}
    vecs = frozen(texts) if frozen is not None else _frozen(model, texts, cfg.encode_batch, encode_progress)
    x = torch.tensor(np.asarray(vecs, dtype=np.float32), device=cfg.device)
    dim = int(x.shape[1])
    rows = lambda ts: torch.tensor([pos[t] for t in ts], dtype=torch.long, device=cfg.device)  # noqa: E731
    u_r, s_r = rows([u for u, _ in data.pairs]), rows([s for _, s in data.pairs])
    cat_texts, cat_labels = list(data.category_texts), list(data.category_labels)
    if cfg.safe_class and data.category_texts:
        # Safe twins form one more "category": gathering the harm categories must not gather
        # the safe prompts that look like them.
        cat_texts += [s for _, s in data.pairs]
        cat_labels += ["\0safe"] * len(data.pairs)
    cat_r = rows(cat_texts)
    safe_r, unsafe_r, geo_r = rows(data.safe_texts), rows(data.unsafe_texts), rows(data.geometry_texts)
    c0 = (x[u_r] * x[s_r]).sum(dim=1)
    codes = {c: i for i, c in enumerate(sorted(set(cat_labels)))}
    cat_y = torch.tensor([codes[c] for c in cat_labels], dtype=torch.long, device=cfg.device)

    adapter = torch.nn.Linear(dim, dim, bias=True).to(cfg.device)
    with torch.no_grad():
        adapter.weight.copy_(torch.eye(dim))
        adapter.bias.zero_()
    per_epoch = steps_per_epoch(data, cfg)
    total = per_epoch * cfg.epochs if cfg.max_steps is None else min(per_epoch * cfg.epochs, cfg.max_steps)
    opt = torch.optim.AdamW(adapter.parameters(), lr=cfg.lr, weight_decay=0.0)
    warm = max(1, int(total * cfg.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.05, (total - s) / max(1, total - warm))))
    cyc = {k: _Cycler(n, rng) for k, n in (("pairs", len(u_r)), ("safe", len(geo_r)), ("unsafe", len(unsafe_r)), ("label_safe", len(safe_r)))}
    last: dict[str, float] = {}
    for step in range(total):
        ci = _class_batch(rng, cat_labels, cfg.category_batch) if cat_texts else []
        pi = cyc["pairs"].take(cfg.pair_batch)
        si = cyc["safe"].take(cfg.safe_batch)
        ui, li = cyc["unsafe"].take(cfg.label_batch), cyc["label_safe"].take(cfg.label_batch)
        lab_rows = torch.cat([unsafe_r[ui], safe_r[li]]) if ui and li else None
        twins_term = _twins_term(adapter, x, u_r, s_r, pi, cfg) if cfg.w_twins and pi else None
        terms = _losses(
            x[cat_r[ci]] if ci else None, cat_y[ci] if ci else None,
            x[u_r[pi]] if pi else None, x[s_r[pi]] if pi else None, c0[pi] if pi else None,
            x[geo_r[si]] if si else None,
            x[lab_rows] if lab_rows is not None else None,
            torch.tensor([1] * len(ui) + [0] * len(li), device=cfg.device) if lab_rows is not None else None,
            adapter, cfg,
        )
        if twins_term is not None:
            terms["twins"] = twins_term
        last = optimise_step(opt, sched, terms)
        if progress is not None:
            progress(step + 1, total, last)
    _save_tuned(model, adapter, dim, out_dir)
    return {"steps": total, "steps_per_epoch": per_epoch, "epochs": cfg.epochs, "sizes": data.sizes(),
            "texts_encoded": len(texts), "last_losses": last, "method": "linear adapter (identity start) + L2 normalisation"}
