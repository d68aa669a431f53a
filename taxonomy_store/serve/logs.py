"""The server's log: one line per request on stderr (ids, lengths, verdicts, timings; never prompt text)."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(message)s"


def configure(level: str = "info") -> None:
    """Send `tstore.serve` lines to stderr at `level` (once per process)."""
    logger = logging.getLogger("tstore.serve")
    logger.setLevel(level.upper())
    if not any(getattr(h, "_tstore", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._tstore = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False
