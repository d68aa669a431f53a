"""tstore demo / reproduce (issue 8)."""

from __future__ import annotations

from .app import cli  # noqa: F401
