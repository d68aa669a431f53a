"""Two or more encoders used as one: each text's unit vectors from every part, side by side.

The vector is the concatenation of the parts' L2-normalised vectors divided by sqrt(n), so it is
a unit vector again and the cosine of two texts is the mean of the parts' cosines. Everything
that reads vectors (neighbours, metrics, calibrate, query, evaluate, the server, the TUI) then
uses the parts together without knowing there are several: a guard that uses a base encoder and
the encoder `tstore adapt` tuned from it (`tstore encoder combine`; docs/BENCHMARKS.md, round
seven). Registered as `combined:<ref>|<ref>...` (`model_refs.py`); its fingerprint is the sha256
of the parts' fingerprints in order, so a change of any part's weights is caught.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from taxonomy_store.backend.encoding import Encoder, normalise_rows
from taxonomy_store.errors import EncoderMismatch

PREFIX = "combined:"
SEPARATOR = "|"


def combined_fingerprint(parts: Sequence[str | None]) -> str:
    h = hashlib.sha256(b"tstore-combined-v1\n")
    for fp in parts:
        h.update(f"{fp or ''}\n".encode())
    return h.hexdigest()


class CombinedEncoder:
    """The `Encoder` of a combined registration: its parts' vectors side by side, over sqrt(n)."""

    def __init__(self, name: str, parts: Sequence[Encoder], registered_fingerprint: str | None):
        self.name = name
        self.parts = list(parts)
        self.registered = registered_fingerprint
        self.dimension: int = sum(int(p.dimension) for p in self.parts)
        self.check_weights()

    @property
    def fingerprint(self) -> str:
        return combined_fingerprint([p.fingerprint for p in self.parts])

    def check_weights(self) -> None:
        for p in self.parts:
            p.check_weights()
        live = self.fingerprint
        if self.registered and live != self.registered:
            raise EncoderMismatch(
                f"the weights of a part of encoder {self.name!r} changed (fingerprint {live[:12]}, registered {self.registered[:12]})",
                f"its vectors came from the old weights: `tstore encoder remove {self.name}` and combine the parts again",
            )

    def encode(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        # each part's rows are unit vectors (or zero, for an empty text): side by side they have length
        # sqrt(n), and normalising them again divides by exactly that
        return normalise_rows(np.hstack([p.encode(texts, batch_size) for p in self.parts]))
