"""The layout of a store directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from taxonomy_store import paths


@dataclass(frozen=True)
class StoreDirs:
    root: Path

    @property
    def chroma(self) -> Path:
        """The embedded Chroma's data (unused when a Chroma server is configured)."""
        return self.root / paths.CHROMA_DIR

    @property
    def cache(self) -> Path:
        """Derived, rebuildable files (kNN graphs)."""
        return self.root / "cache"
