"""tstore import / export / prompt and pair curation commands (issue 4)."""

from __future__ import annotations

from .app import cli  # noqa: F401
