"""Which tuning method `tstore adapt` runs: one table from method name to training function.

- "layers" (default, `tune_layers` > 0): the encoder's top transformer layers are tuned on
  cached lower-layer states (adapt_layers);
- "adapter" (`tune_layers` = 0): a linear adapter on the frozen encoder (adapt_training).
Both take the same TrainingData and AdaptConfig and save a plain sentence-transformers folder.
The layer method knows BERT (minilm) and MPNet (SBERT-all) layers; an encoder of another
architecture gets the adapter, and the summary's "method" says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import json
from dataclasses import replace

import numpy as np

from taxonomy_store.adapt.layers import train_layers
from taxonomy_store.adapt.training import AdaptConfig, Progress, TrainingData, method, train_adapter


def _layers(model_dir, data, cfg, out_dir, progress, encode_progress, frozen):
    return train_layers(model_dir, data, cfg, out_dir, progress, encode_progress)


LAYER_ARCHITECTURES = ("bert", "mpnet")


def layer_tunable(model_dir: str | Path) -> bool:
    """Whether the folder's transformer is one whose layers adapt_layers can run (from its config.json)."""
    config = Path(model_dir) / "config.json"
    if not config.is_file():
        return False
    return json.loads(config.read_text(encoding="utf-8")).get("model_type") in LAYER_ARCHITECTURES


TRAINERS: dict[str, Callable[..., dict[str, Any]]] = {"layers": _layers, "adapter": train_adapter}


def train(model_dir: str | Path, data: TrainingData, cfg: AdaptConfig, out_dir: str | Path, progress: Progress = None,
          encode_progress: Callable[[int, int], None] | None = None,
          frozen: Callable[[list[str]], np.ndarray] | None = None) -> dict[str, Any]:
    """Tune the model in model_dir by cfg's method; save it to out_dir.

    frozen (text -> FROM's vector, e.g. the store's) spares the adapter method any encoding; the
    layer method runs FROM's lower layers over the texts itself and does not use it.
    """
    if method(cfg) == "layers" and not layer_tunable(model_dir):
        cfg = replace(cfg, tune_layers=0)
    return TRAINERS[method(cfg)](model_dir, data, cfg, out_dir, progress, encode_progress, frozen)
