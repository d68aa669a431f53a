"""Running an encoder: a SentenceTransformer loaded offline, once per process and (folder, device).

Before a model encodes anything for the store, its live weights are checked against the
registry: a changed fingerprint or dimension raises EncoderMismatch, so vectors of a changed
model never mix into an old collection. torch and sentence-transformers are imported here only,
inside functions.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from taxonomy_store.errors import EncoderError, EncoderMismatch
from taxonomy_store.backend.model_folders import fingerprint


class Registered(Protocol):
    """What running an encoder needs of its registry row (`encoder_info.EncoderInfo`)."""

    @property
    def name(self) -> str: ...
    @property
    def model_ref(self) -> str: ...
    @property
    def fingerprint(self) -> str | None: ...
    @property
    def dimension(self) -> int | None: ...
    @property
    def device(self) -> str: ...
    @property
    def batch_size(self) -> int: ...


@runtime_checkable
class Encoder(Protocol):
    """What the store needs of a running encoder: L2-normalised float32 rows of `dimension`
    columns, and the fingerprint of the weights that make them.

    Implementations: `LiveEncoder` (a sentence-transformers model folder, checked against the
    registry) and `hashing_encoder.HashingEncoder` (deterministic, no model; for tests);
    `model_refs.open_encoder` picks one from the registered model reference."""

    @property
    def dimension(self) -> int: ...

    @property
    def fingerprint(self) -> str | None: ...

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray: ...

    def check_weights(self) -> None: ...


# Set in the test suite's fast tier (`make test-fast`): a test that loads real weights there is
# mis-marked, and fails loudly instead of quietly making the tier slow.
NO_WEIGHTS_ENV = "TSTORE_TEST_TIER"
# Set once per process where a store is opened (store.py reads TSTORE_TEST_TIER): with "fast" no
# model weights may load, so a test missing its `model` mark fails loudly instead of running slowly.
_weights_refused: str | None = None


def refuse_weights(tier: str | None) -> None:
    """The tier of the process, as the store that opened last read it (None: weights may load)."""
    global _weights_refused
    _weights_refused = tier


_MODELS: dict[tuple[str, str], object] = {}
_LOCK = threading.Lock()


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def fresh_model(path: str, device: str = "cpu"):
    """A new SentenceTransformer from a local folder, offline and without transformers' "Loading
    weights" bar (it would land in our stderr progress output); not cached: `tstore adapt` changes its copy."""
    if _weights_refused == "fast":
        raise EncoderError(
            f"{NO_WEIGHTS_ENV}=fast: this process may not load model weights ({path})",
            "mark the test `model` (or use the `hashing:DIM` test encoder)",
        )
    _offline()
    from sentence_transformers import SentenceTransformer

    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:
        pass
    try:
        return SentenceTransformer(str(path), device=device, local_files_only=True)
    except Exception as exc:
        raise EncoderError(f"cannot load the model at {path} on {device}: {exc}", "check the folder and the device") from exc


def load_model(path: str, device: str = "cpu"):
    """The SentenceTransformer at a local folder, cached per process by (path, device)."""
    key = (str(path), device)
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = fresh_model(path, device)
        return _MODELS[key]


class LiveEncoder:
    """The sentence-transformers `Encoder`: a registered model folder, loaded offline and checked against the registry."""

    def __init__(self, info: Registered, folder: Path, *, device: str | None = None):
        self.info = info
        self.path = folder
        self.check_weights()
        self.device = device or info.device
        self.model = load_model(str(self.path), self.device)
        dim = loaded_model_dimension(self.model)
        if info.dimension and dim and dim != info.dimension:
            raise EncoderMismatch(
                f"encoder {info.name!r} now makes {dim}-dimensional vectors, its collection holds {info.dimension}",
                f"`tstore encoder remove {info.name}` and add it again",
            )
        self.dimension: int = dim or info.dimension or 0

    @property
    def fingerprint(self) -> str:
        """The fingerprint of the weights in the folder now (re-hashed only when the files changed)."""
        return fingerprint(self.path)

    def check_weights(self) -> None:
        """EncoderMismatch when the folder's weights are not the registered ones."""
        info = self.info
        live_fp = self.fingerprint
        if info.fingerprint and live_fp != info.fingerprint:
            raise EncoderMismatch(
                f"the weights of encoder {info.name!r} changed (fingerprint {live_fp[:12]}, registered {info.fingerprint[:12]})",
                f"its vectors came from the old weights: `tstore encoder remove {info.name}` and add it again under the new weights",
            )

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        return encode(self.model, texts, batch_size or self.info.batch_size)


def encode(model, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """float32 vectors, each L2-normalised (rows of zeros stay zero)."""
    if len(texts) == 0:
        return np.zeros((0, loaded_model_dimension(model)), dtype=np.float32)
    vecs = model.encode(
        list(texts), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=False, show_progress_bar=False
    )
    return normalise_rows(np.asarray(vecs, dtype=np.float32))


def loaded_model_dimension(model) -> int:
    """The embedding size a loaded sentence-transformers model reports."""
    get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(get() or 0)


def normalise_rows(vecs: np.ndarray) -> np.ndarray:
    vecs = np.asarray(vecs, dtype=np.float32)
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vecs / norms).astype(np.float32, copy=False)


def normalise_rows_in_place(vecs: np.ndarray) -> np.ndarray:
    """`normalise_rows` without a copy when vecs is a writable float32 array (the caller's own):
    the same values, bit for bit."""
    if not (isinstance(vecs, np.ndarray) and vecs.dtype == np.float32 and vecs.flags.writeable and vecs.flags.c_contiguous):
        return normalise_rows(vecs)
    for s in range(0, len(vecs), 65536):
        part = vecs[s:s + 65536]
        norms = np.linalg.norm(part, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        np.divide(part, norms, out=part)
    return vecs


class LiveEncoders:
    """The encoders this store has loaded, one per (name, fingerprint); weights re-checked on reuse.

    `open_encoder` makes the running encoder of a registered one (`model_refs.open_encoder`)."""

    def __init__(self, open_encoder: Callable[[Registered], Encoder]) -> None:
        self._open = open_encoder
        self._live: dict[tuple[str, str | None], Encoder] = {}
        self._installed: set[tuple[str, str | None]] = set()

    def install(self, info: Registered, encoder: Encoder) -> None:
        """Use this encoder for a registered encoder from now on, unchecked: a test's deterministic stand-in."""
        key = (info.name, info.fingerprint)
        self._live[key] = encoder
        self._installed.add(key)

    def get(self, info: Registered) -> Encoder:
        key = (info.name, info.fingerprint)
        if key not in self._live:
            self._live[key] = self._open(info)
        elif key not in self._installed:
            self._live[key].check_weights()  # every encoder kind checks its own weights (the hashing one has none)
        return self._live[key]
