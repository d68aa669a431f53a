"""tstore metrics ... (issue 5)."""

from __future__ import annotations

from .app import cli  # noqa: F401
