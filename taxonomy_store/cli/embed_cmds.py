"""tstore embed / verify (issue 3)."""

from __future__ import annotations

from .app import cli  # noqa: F401
