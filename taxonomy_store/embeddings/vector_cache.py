"""A local copy of an encoder's whole collection, so that a new process does not read every vector
back from Chroma.

Commands that need every vector (query, metrics, calibrate, suspects, the TUI) read the whole
collection on their first use in a process: 8 s for 100,000 vectors on a quiet 2-core machine,
minutes at a million. The copy is one `.npz` per collection under the store's cache directory,
holding each vector with the prompt id and the text hash it was computed from, and the encoder's
`vectors_revision` it was read at. That counter is bumped in the transaction of every write of
the encoder's bookkeeping (embed, verify --repair, a drop of deleted prompts' vectors), so a copy
of another revision is never used; the next full read replaces it. A copy is saved only when the
revision did not move while Chroma was read. The files are derived: a missing, damaged or foreign
file is a miss, never an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Snapshot:
    """Every vector of a collection: prompt ids, the text hashes they were computed from, the vectors as stored."""

    ids: np.ndarray  # int64
    shas: np.ndarray  # "S64": the prompt text's sha256 (hex) each vector was computed from
    vectors: np.ndarray  # float32, (n, dimension)


class VectorCache:
    def __init__(self, cache_dir: Path):
        self.dir = cache_dir / "vectors"

    def path(self, collection: str) -> Path:
        return self.dir / f"{collection}.npz"

    def load(self, collection: str, revision: int, dimension: int) -> Snapshot | None:
        """The copy of `collection` at `revision`, or None (absent, another revision, damaged)."""
        path = self.path(collection)
        try:
            with np.load(path, allow_pickle=False) as f:
                if int(f["revision"]) != revision or str(f["collection"]) != collection:
                    return None
                snap = Snapshot(f["ids"], f["shas"], f["vectors"])
        except (OSError, ValueError, KeyError, EOFError):
            return None
        n = len(snap.ids)
        if snap.ids.dtype != np.int64 or len(snap.shas) != n or snap.vectors.shape != (n, dimension) or snap.vectors.dtype != np.float32:
            return None
        return snap

    def save(self, collection: str, revision: int, snap: Snapshot) -> None:
        """Write the copy (atomically: a reader sees the old file or the new one, never half of one)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.path(collection)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        try:
            np.savez(tmp, ids=snap.ids, shas=snap.shas, vectors=snap.vectors, revision=np.array(revision),
                     collection=np.array(collection))
            tmp.replace(path)
        except OSError:
            tmp.unlink(missing_ok=True)  # a full or read-only disk: the next process reads Chroma again

    def drop(self, collection: str) -> None:
        self.path(collection).unlink(missing_ok=True)
