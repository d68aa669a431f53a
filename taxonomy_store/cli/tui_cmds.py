"""tstore tui (issue 7)."""

from __future__ import annotations

from .app import cli  # noqa: F401
