"""Where things live: the store directory, and the data that ships inside the package."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

STORE_MARKER = "tstore-store.json"
SQLITE_NAME = "tstore.db"
CHROMA_DIR = "chroma"


def default_store_dir() -> Path:
    """`$XDG_DATA_HOME/tstore` (usually ~/.local/share/tstore)."""
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "tstore"


def resolve_store_dir(explicit: str | os.PathLike | None) -> Path:
    """--store DIR, then TSTORE_HOME, then the per-user default."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("TSTORE_HOME")
    if env:
        return Path(env).expanduser()
    return default_store_dir()


def package_dir(subpackage: str) -> Path:
    """Folder of a data subpackage (migrations, seeds, tui), in a checkout or an installed wheel."""
    return Path(str(resources.files(f"taxonomy_store.{subpackage}")))
