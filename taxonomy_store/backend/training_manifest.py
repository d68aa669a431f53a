"""What an adapted encoder was trained on, kept in its model folder (`tstore-training.json`).

`tstore adapt` writes it beside the weights before the folder is renamed into place, so the
record travels with the encoder (`tstore encoder export` copies it) and never disagrees with
the weights. Prompts are matched by the sha256 of their normalised text (the store's own
`text_sha256`): a prompt re-imported under a new id is still "trained on", an edited prompt
is new text the encoder never saw, and the record means the same in another store. The prompt
ids are kept too, for the record; they mean something only in the store that trained.

A guard figure computed on prompts the encoder trained on measures memory, not how it does on
new traffic: calibration and evaluation use this record to say which figures are held out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from taxonomy_store.errors import EncoderError

if TYPE_CHECKING:
    from taxonomy_store.backend.encoder_info import EncoderInfo

MANIFEST = "tstore-training.json"
HASH_CHARS = 16  # 64 bits of the sha256: collisions negligible at any store size, a third of the file


def write_manifest(folder: Path, *, trained_hashes: Iterable[str], trained_ids: Iterable[int], held_out: int,
                   holdout_fraction: float | None, seed: int, inherited_from: str | None = None) -> dict[str, Any]:
    """Write the record into `folder`; returns its summary (what the registry row keeps)."""
    hashes = sorted({h[:HASH_CHARS] for h in trained_hashes})
    ids = sorted(int(i) for i in trained_ids)
    summary = {"trained_prompts": len(hashes), "held_out_prompts": int(held_out), "holdout_fraction": holdout_fraction,
               "seed": int(seed), "manifest": MANIFEST, "inherited_from": inherited_from}
    body = {**summary, "match": f"sha256 of the normalised text, first {HASH_CHARS} hex digits",
            "trained_text_sha256": hashes, "trained_prompt_ids": ids}
    (Path(folder) / MANIFEST).write_text(json.dumps(body, separators=(",", ":")), encoding="utf-8")
    return summary


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The record, or None for an encoder nobody trained here (a base model, or one adapted before it existed)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def trained_hashes(folder: Path) -> frozenset[str] | None:
    manifest = read_manifest(folder)
    return None if manifest is None else frozenset(manifest.get("trained_text_sha256") or ())


def trained_mask(folder: Path, text_sha256: Iterable[str]) -> np.ndarray | None:
    """Per text hash: did the encoder in `folder` train on this text? None when it keeps no record."""
    hashes = trained_hashes(folder)
    if hashes is None:
        return None
    return np.array([h[:HASH_CHARS] in hashes for h in text_sha256], dtype=bool)


@dataclass(frozen=True)
class TrainedOn:
    mask: np.ndarray  # per prompt asked about: trained on
    recorded: bool  # False: an adapted encoder without a record, every prompt counted as trained on


def trained_on(info: "EncoderInfo", text_sha256: Sequence[str]) -> TrainedOn | None:
    """Which of these prompts (by text hash) the encoder trained on; None for one nobody trained here.
    A combined encoder trained on what any of its parts trained on."""
    from taxonomy_store.backend.model_refs import combined_parts, resolve_model_ref

    parts = combined_parts(info.model_ref)
    if parts is None:
        return _folder_trained_on(lambda: info.model_path, bool(info.adapted_from), text_sha256)
    found = [_folder_trained_on(partial(resolve_model_ref, ref, info.store_dir or None), ref.startswith(ADAPTED_FOLDERS),
                                text_sha256) for ref in parts]
    known = [f for f in found if f is not None]
    if not known:
        return None
    return TrainedOn(np.logical_or.reduce([f.mask for f in known]), all(f.recorded for f in known))


ADAPTED_FOLDERS = "store:models/"  # where `tstore adapt` puts what it tunes (adaptation.MODELS_DIR): a combined part there was tuned


def _folder_trained_on(folder: Callable[[], Path], adapted: bool, text_sha256: Sequence[str]) -> TrainedOn | None:
    """The record in the encoder's folder; without one, an adapted encoder counts every prompt as trained on."""
    try:
        mask = trained_mask(folder(), text_sha256)
    except EncoderError:  # its package or folder is gone: nothing to read (a base model's package)
        mask = None
    if mask is not None:
        return TrainedOn(mask, True)
    if adapted:
        return TrainedOn(np.ones(len(text_sha256), dtype=bool), False)
    return None
