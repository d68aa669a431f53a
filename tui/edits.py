"""The edits this run of the app wrote (for a scoped undo) and the one-line toasts that name them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TEXT_PREVIEW = 40


@dataclass
class Edit:
    """One audit batch written by this app: what it changed, in words, and where to show it again."""

    batch_id: str
    what: str  # "prompt #12 label safe → unsafe"
    mode: str  # the screen it was made on
    entity: str  # "prompt" or "pair"
    entity_id: int
    undone: bool = False


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TEXT_PREVIEW else text[: TEXT_PREVIEW - 1] + "…"


def prompt_change(old: Any, changes: dict[str, Any]) -> str:
    """`prompt #12 label safe → unsafe, category a → b` from the prompt before and the changed fields."""
    parts = []
    if "label" in changes:
        parts.append(f"label {old.label} → {changes['label']}")
    if "category" in changes:
        parts.append(f"category {old.category_code or 'none'} → {changes['category'] or 'none'}")
    if "text" in changes:
        parts.append(f"text “{_short(old.text)}” → “{_short(changes['text'])}”")
    return f"prompt #{old.id} " + (", ".join(parts) or "unchanged")


def pair_change(pair: Any, status: str, note: str | None = None) -> str:
    if note is not None:
        return f"pair #{pair.id} note “{_short(getattr(pair, 'note', None) or '')}” → “{_short(note)}”"
    return f"pair #{pair.id} {pair.status} → {status}"
