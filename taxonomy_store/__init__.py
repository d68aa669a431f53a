"""tstore: a safety taxonomy store (SQL truth, Chroma index, Safe-Embed metrics).

Importing this package must stay cheap: no torch, sentence-transformers, chromadb,
textual or rich at import time (a test guards it).
"""

__version__ = "0.1.0"

__all__ = ["__version__", "Store", "open_store", "init_store"]


def __getattr__(name: str):
    # The facade pulls in SQLAlchemy; load it on first use only.
    if name in ("Store", "open_store", "init_store"):
        from taxonomy_store import store

        return getattr(store, name)
    raise AttributeError(name)
