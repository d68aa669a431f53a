"""A deterministic hashing encoder: bag of words and word trigrams of characters, hashed into a
fixed number of signed buckets, L2-normalised.

No model, no torch, the same vectors on every machine: texts that share words are near, texts
that share none are (nearly) orthogonal. Registered as `hashing:<dimension>` (`model_refs.py`) it
runs in every process that opens the store (a `tstore` subprocess, the TUI); tests also put it in
place of a registered model (`LiveEncoders.install`). For tests and development, where the
model's behaviour is not the point: storage, bookkeeping, filters, staleness.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Sequence

import numpy as np

VERSION = "tstore-hashing-v1"
_WORD = re.compile(r"\w+", re.UNICODE)


def hashing_fingerprint(dimension: int) -> str:
    """Stands in for a weights hash: the same scheme and dimension always make the same vectors."""
    return hashlib.sha256(f"{VERSION}|{dimension}".encode()).hexdigest()


def _features(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    grams = [f"#{w[i:i + 3]}" for w in words if len(w) > 3 for i in range(len(w) - 2)]
    return words + grams


@lru_cache(maxsize=1 << 18)  # words and trigrams repeat across texts: hash each once (a million-prompt embed)
def _bucket(feature: str, dimension: int) -> tuple[int, float]:
    h = int.from_bytes(hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest(), "little")
    return h % dimension, (1.0 if (h >> 63) & 1 else -1.0)


class HashingEncoder:
    """The `Encoder` protocol without a model: words and in-word character trigrams, hashed."""

    def __init__(self, dimension: int):
        self.dimension = int(dimension)
        self.fingerprint = hashing_fingerprint(self.dimension)
        self.calls = 0  # encode() calls, for tests that count model work

    def check_weights(self) -> None:
        """Nothing to re-check: the scheme and the dimension are the weights."""

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in _features(text):
                col, sign = _bucket(feature, self.dimension)
                out[row, col] += sign
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return out / norms
