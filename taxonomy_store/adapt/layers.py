"""Tuning the top transformer layers of a sentence encoder on cached lower-layer token states.

The default method of `tstore adapt`: the embeddings and the lower layers stay frozen, so each
training text goes through them once (the token states are kept in memory); a step runs only
the top `tune_layers` layers forward and backward over those states, then mean pooling and L2
normalisation. On minilm (6 layers) tuning the top 2 costs about a third of a full fine-tuning
step. The saved folder is the encoder itself with its top layers replaced: a plain
sentence-transformers model, the same modules as FROM.

The objective is adapt_training's terms over the tuned encoder's vectors (category, pairs,
label, geometry, twins, sensitivity, boundary, anchor). The label term reuses the step's texts (category prompts and pair
originals unsafe, safe twins and everyday prompts safe, plus a few unsafe prompts without a
category); the geometry teacher is FROM's top layers on the same states. The sensitivity term
runs each step's category prompts' one-word swaps (adapt_swaps) through the same layers; with
`sensitivity_moves_swap_only` its gradient reaches the swaps' vectors only, not the prompts'.
"""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any, Callable

from taxonomy_store.adapt.swaps import harm_scores, object_pool, swap_pool, target_swaps, word_swaps
from taxonomy_store.backend.encoding import fresh_model
from taxonomy_store.adapt.training import AdaptConfig, TrainingData, _class_batch, _Cycler, _supcon, optimise_step, resolved, steps_per_epoch


def _bert(model):
    return model[0].auto_model


def _masks(bert, h, att):
    """The attention mask in the form the model's attention implementation expects."""
    if hasattr(bert, "_create_attention_masks"):  # BERT (minilm)
        import inspect

        # transformers 5.x added position_ids (None: positions 0..n-1, as the model's own forward uses)
        extra = {"position_ids": None} if "position_ids" in inspect.signature(bert._create_attention_masks).parameters else {}
        return bert._create_attention_masks(attention_mask=att, encoder_attention_mask=None, embedding_output=h,
                                            encoder_hidden_states=None, cache=None, **extra)[0]
    from transformers.masking_utils import create_bidirectional_mask  # MPNet (SBERT-all)

    return create_bidirectional_mask(config=bert.config, inputs_embeds=h, attention_mask=att)


def _run(layers, bert, h, am):
    # MPNet's layers take a relative position bias, computed from the sequence as its encoder does.
    extra = (bert.encoder.compute_position_bias(h),) if hasattr(bert.encoder, "compute_position_bias") else ()
    for layer in layers:
        h = layer(h, am, *extra)
        h = h[0] if isinstance(h, tuple) else h
    return h


def _embed(bert, f: dict):
    if bert.config.model_type == "bert":
        return bert.embeddings(input_ids=f["input_ids"], token_type_ids=f.get("token_type_ids"))
    return bert.embeddings(input_ids=f["input_ids"])


def lower_states(model, texts: list[str], n_top: int, batch_size: int = 64,
                 progress: Callable[[int, int], None] | None = None) -> list:
    """Each text's token states after the embeddings and the frozen lower layers (no padding)."""
    import torch

    bert = _bert(model)
    low = len(bert.encoder.layer) - n_top
    out: list = [None] * len(texts)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths, little padding
    with torch.no_grad():
        for j in range(0, len(order), batch_size):
            ids = order[j : j + batch_size]
            f = {k: v.to(model.device) if hasattr(v, "to") else v for k, v in model.preprocess([texts[i] for i in ids]).items()}
            h = _embed(bert, f)
            h = _run(bert.encoder.layer[:low], bert, h, _masks(bert, h, f["attention_mask"]))
            for r, i in enumerate(ids):
                out[i] = h[r, : int(f["attention_mask"][r].sum())].clone()
            if progress:
                progress(min(j + batch_size, len(order)), len(order))
    return out


def top_vectors(layers, bert, states: list, max_tokens: int | None = None):
    """Unit vectors of the texts whose lower-layer states are given, through `layers` + mean pooling."""
    import torch

    hs = [s[:max_tokens] if max_tokens else s for s in states]
    n, d = max(h.shape[0] for h in hs), hs[0].shape[1]
    h = torch.zeros(len(hs), n, d, device=hs[0].device)
    att = torch.zeros(len(hs), n, dtype=torch.long, device=hs[0].device)
    for r, x in enumerate(hs):
        h[r, : x.shape[0]] = x
        att[r, : x.shape[0]] = 1
    h = _run(layers, bert, h, _masks(bert, h, att))
    e = (h * att[..., None]).sum(1) / att.sum(1, keepdim=True)
    return torch.nn.functional.normalize(e, dim=-1)


def _step_terms(layers, frozen_layers, bert, states, batch: dict, c0, cfg: AdaptConfig) -> dict:
    import torch

    ci, pu, ps, gi, ui = batch["cat"], batch["u"], batch["s"], batch["geo"], batch["unsafe"]
    dev = states[0].device
    e = top_vectors(layers, bert, [states[i] for i in ci + pu + ps + gi + ui], cfg.max_tokens)
    nc, npr, ng = len(ci), len(pu), len(gi)
    ec, eu, es = e[:nc], e[nc : nc + npr], e[nc + npr : nc + 2 * npr]
    eg = e[nc + 2 * npr : nc + 2 * npr + ng]
    terms: dict = {}
    if nc and cfg.w_category:
        terms["category"] = cfg.w_category * _supcon(ec, torch.tensor(batch["cat_y"], device=dev), cfg.temperature)
    if npr and cfg.w_pairs:
        c = (eu * es).sum(dim=1)
        terms["pairs"] = cfg.w_pairs * torch.relu(c - (c0[batch["pi"]] - cfg.pair_margin)).pow(2).mean() * 10
    if cfg.w_label:
        y = torch.tensor([1] * (nc + npr) + [0] * (npr + ng) + [1] * len(ui), device=dev)
        terms["label"] = cfg.w_label * _supcon(e, y, cfg.temperature * 4)
    if ng and cfg.w_geometry:
        with torch.no_grad():
            eg0 = top_vectors(frozen_layers, bert, [states[i] for i in gi], cfg.max_tokens)
        terms["geometry"] = cfg.w_geometry * (eg @ eg.T - eg0 @ eg0.T).pow(2).mean()
    if batch["swap"] and cfg.w_sensitivity:
        ew = top_vectors(layers, bert, [states[i] for i in batch["swap"]], cfg.max_tokens)
        prompts = ec[batch["swap_rows"]]
        if cfg.sensitivity_moves_swap_only:  # the category term decides where the prompt sits; this term moves the swap
            prompts = prompts.detach()
        c = (prompts * ew).sum(dim=1)
        limit = torch.tensor(batch["swap_c0"], device=dev) - cfg.sensitivity_margin
        terms["sensitivity"] = cfg.w_sensitivity * torch.relu(c - limit).pow(2).mean() * 10
    if batch["bu"] and cfg.w_boundary:
        eb = top_vectors(layers, bert, [states[i] for i in batch["bu"] + batch["bs"]], cfg.max_tokens)
        nb = len(batch["bu"])
        c = (eb[:nb] * eb[nb:]).sum(dim=1)
        limit = torch.tensor(batch["b_c0"], device=dev) - cfg.boundary_margin
        terms["boundary"] = cfg.w_boundary * torch.relu(c - limit).pow(2).mean() * 10
    if cfg.w_anchor:
        terms["anchor"] = cfg.w_anchor * _anchor(e, frozen_layers, bert, states, ci + pu, ps, gi + ui, cfg)
    if npr and cfg.w_twins:
        y_tw = torch.tensor([1] * npr + [0] * npr, device=dev)
        terms["twins"] = cfg.w_twins * _supcon(torch.cat([eu, es]), y_tw, cfg.temperature * 4)
    return terms


def _anchor(e, frozen_layers, bert, states, head: list[int], twins: list[int], tail: list[int], cfg: AdaptConfig):
    """Mean 1 - cos between each step prompt's tuned vector and FROM's, the safe twins left free to move.

    e holds the step's vectors in the order head (category prompts, unsafe originals), twins, tail
    (everyday, other unsafe prompts)."""
    import torch

    keep = list(range(len(head))) + list(range(len(head) + len(twins), len(head) + len(twins) + len(tail)))
    if not keep:
        return e.sum() * 0.0
    with torch.no_grad():
        e0 = top_vectors(frozen_layers, bert, [states[i] for i in head + tail], cfg.max_tokens)
    return (1.0 - (e[keep] * e0).sum(dim=1)).mean()


class _Batches:
    """Indices into the training texts for one step: P x K category prompts, pairs, everyday, unsafe."""

    def __init__(self, data: TrainingData, pos: dict[str, int], cfg: AdaptConfig, rng: random.Random,
                 swaps: dict[str, tuple[str, float]] | None = None, boundary: list[tuple[int, int, float]] | None = None):
        self.rng, self.cfg, self.data, self.pos, self.swaps = rng, cfg, data, pos, swaps or {}
        self.boundary = boundary or []
        self.codes = {c: i for i, c in enumerate(sorted(set(data.category_labels)))}
        cat = set(data.category_texts)
        self.extra_unsafe = [t for t in data.unsafe_texts if t not in cat and t not in {u for u, _ in data.pairs}]
        self.cyc = {k: _Cycler(n, rng) for k, n in (("pairs", len(data.pairs)), ("geo", len(data.geometry_texts)),
                                                    ("unsafe", len(self.extra_unsafe)), ("boundary", len(self.boundary)))}

    def next(self) -> dict:
        d, b, p = self.data, resolved(self.cfg), self.pos
        ci = _class_batch(self.rng, d.category_labels, b.category_batch) if d.category_texts else []
        pi = self.cyc["pairs"].take(b.pair_batch)
        rows = [r for r, i in enumerate(ci) if d.category_texts[i] in self.swaps]
        swapped = [self.swaps[d.category_texts[ci[r]]] for r in rows]
        bi = [self.boundary[i] for i in self.cyc["boundary"].take(b.pair_batch)]
        return {"swap_rows": rows, "swap": [p[t] for t, _ in swapped], "swap_c0": [c for _, c in swapped],
                "bu": [u for u, _, _ in bi], "bs": [s for _, s, _ in bi], "b_c0": [c for _, _, c in bi],
                "cat": [p[d.category_texts[i]] for i in ci], "cat_y": [self.codes[d.category_labels[i]] for i in ci],
                "pi": pi, "u": [p[d.pairs[i][0]] for i in pi], "s": [p[d.pairs[i][1]] for i in pi],
                "geo": [p[d.geometry_texts[i]] for i in self.cyc["geo"].take(b.safe_batch)],
                "unsafe": [p[self.extra_unsafe[i]] for i in self.cyc["unsafe"].take(b.label_batch)]}


def train_layers(model_dir: str | Path, data: TrainingData, cfg: AdaptConfig, out_dir: str | Path,
                 progress: Callable[[int, int, dict[str, float]], None] | None = None,
                 encode_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Tune the top cfg.tune_layers layers of the model in model_dir; save the whole model to out_dir."""
    cfg = resolved(cfg)
    model = fresh_model(str(model_dir), cfg.device)
    bert = _bert(model)
    swaps = training_swaps(data, cfg)
    texts = training_texts(data, swaps)
    states = lower_states(model, texts, cfg.tune_layers, cfg.encode_batch, encode_progress)
    total = _total_steps(data, cfg)
    layers, last = fit(bert, states, {t: i for i, t in enumerate(texts)}, data, cfg, total, progress, swaps)
    low = len(bert.encoder.layer) - cfg.tune_layers
    _save(model, layers, low, out_dir)
    return {"steps": total, "steps_per_epoch": steps_per_epoch(data, cfg), "epochs": cfg.epochs, "sizes": data.sizes(),
            "texts_encoded": len(texts), "swaps": len(swaps), "last_losses": last,
            "method": f"top {cfg.tune_layers} of {len(bert.encoder.layer)} transformer layers tuned (lower layers frozen)"}


def training_swaps(data: TrainingData, cfg: AdaptConfig) -> dict[str, str]:
    """Each category prompt's one-word swap, words drawn from the everyday (else safe) prompts; none without the term.
    With cfg.swap_target the swap is aimed (adapt_swaps.target_swaps: harm scores from the training labels)."""
    if not resolved(cfg).w_sensitivity:
        return {}
    everyday = data.geometry_texts or data.safe_texts or data.category_texts
    swaps = word_swaps(data.category_texts, swap_pool(everyday), cfg.seed)
    if cfg.swap_target:
        scores = harm_scores(data.unsafe_texts, sorted(set(data.safe_texts) | set(data.geometry_texts)))
        swaps.update(target_swaps(data.category_texts, scores, object_pool(everyday, scores), cfg.seed))
    return swaps


def training_texts(data: TrainingData, swaps: dict[str, str] | None = None) -> list[str]:
    return sorted(set(data.category_texts) | {t for p in data.pairs for t in p} | set(data.unsafe_texts)
                  | set(data.geometry_texts) | set((swaps or {}).values()))


def _swap_targets(frozen_layers, bert, states: list, pos: dict[str, int], swaps: dict[str, str],
                  max_tokens: int) -> dict[str, tuple[str, float]]:
    """prompt -> (its swap, their cosine under FROM), as training sees them (cut to max_tokens); swaps
    that the cut makes identical to their prompt are dropped (they could never move apart)."""
    import torch

    keys = sorted(swaps)
    if not keys:
        return {}
    with torch.no_grad():
        a = top_vectors(frozen_layers, bert, [states[pos[t]] for t in keys], max_tokens)
        b = top_vectors(frozen_layers, bert, [states[pos[swaps[t]]] for t in keys], max_tokens)
        cos = (a * b).sum(1).tolist()
    return {t: (swaps[t], c) for t, c in zip(keys, cos) if c < 0.9999}


def _boundary_pairs(frozen_layers, bert, states: list, pos: dict[str, int], data: TrainingData,
                    cfg: AdaptConfig) -> list[tuple[int, int, float]]:
    """(unsafe state row, safe state row, their cosine under FROM): each safe prompt's boundary_k nearest
    unsafe prompts and each unsafe prompt's boundary_k nearest safe prompts, as training sees them."""
    import torch

    safe = sorted(set(data.safe_texts) | set(data.geometry_texts))
    unsafe = sorted(set(data.unsafe_texts) - set(safe))
    if not safe or not unsafe:
        return []
    with torch.no_grad():
        es = torch.cat([top_vectors(frozen_layers, bert, [states[pos[t]] for t in safe[i : i + 256]], cfg.max_tokens)
                        for i in range(0, len(safe), 256)])
        eu = torch.cat([top_vectors(frozen_layers, bert, [states[pos[t]] for t in unsafe[i : i + 256]], cfg.max_tokens)
                        for i in range(0, len(unsafe), 256)])
        sim = es @ eu.T
    k = min(cfg.boundary_k, len(unsafe), len(safe))
    found: dict[tuple[int, int], float] = {}
    for si, ui in [(r, c) for r, row in enumerate(sim.topk(k, dim=1).indices.tolist()) for c in row] + \
                  [(r, c) for c, col in enumerate(sim.topk(k, dim=0).indices.T.tolist()) for r in col]:
        found[(ui, si)] = float(sim[si, ui])
    return [(pos[unsafe[u]], pos[safe[s]], c) for (u, s), c in sorted(found.items())]


def fit(bert, states: list, pos: dict[str, int], data: TrainingData, cfg: AdaptConfig, total: int,
        progress: Callable[[int, int, dict[str, float]], None] | None = None,
        swaps: dict[str, str] | None = None) -> tuple[Any, dict[str, float]]:
    """(a tuned copy of bert's top cfg.tune_layers layers, the last step's loss terms) after total steps."""
    import torch

    cfg = resolved(cfg)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    frozen_layers = bert.encoder.layer[len(bert.encoder.layer) - cfg.tune_layers :]
    layers = copy.deepcopy(frozen_layers)
    for mod in layers.modules():  # a few dozen steps: dropout only adds noise
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
    c0 = None
    if data.pairs:
        with torch.no_grad():
            u = top_vectors(frozen_layers, bert, [states[pos[u]] for u, _ in data.pairs])
            c0 = (u * top_vectors(frozen_layers, bert, [states[pos[s]] for _, s in data.pairs])).sum(1)
    opt = torch.optim.AdamW(layers.parameters(), lr=cfg.lr, weight_decay=0.01)
    warm = max(1, int(total * cfg.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    boundary = _boundary_pairs(frozen_layers, bert, states, pos, data, cfg) if cfg.w_boundary else []
    batches = _Batches(data, pos, cfg, rng, _swap_targets(frozen_layers, bert, states, pos, swaps or {}, cfg.max_tokens),
                       boundary)
    last: dict[str, float] = {}
    for step in range(total):
        last = optimise_step(opt, sched, _step_terms(layers, frozen_layers, bert, states, batches.next(), c0, cfg))
        if progress is not None:
            progress(step + 1, total, last)
    return layers, last


def _total_steps(data: TrainingData, cfg: AdaptConfig) -> int:
    full = steps_per_epoch(data, cfg) * cfg.epochs
    return full if cfg.max_steps is None else min(full, cfg.max_steps)


def _save(model, layers, low: int, out_dir: str | Path) -> None:
    """The model with its top layers replaced by the tuned ones, saved as a plain sentence-transformers folder."""
    bert = _bert(model)
    for i, layer in enumerate(layers):
        bert.encoder.layer[low + i].load_state_dict(layer.state_dict())
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.to("cpu").save(str(out_dir))
