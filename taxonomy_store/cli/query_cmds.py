"""tstore query / calibrate (issue 6)."""

from __future__ import annotations

from .app import cli  # noqa: F401
