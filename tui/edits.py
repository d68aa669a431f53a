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


CONTEXT = 12  # characters kept before a text change


def _visible(text: str) -> str:
    """Control characters as their Unicode pictures (ESC → ␛): a real ESC never looks like the typed `\\x1b`."""
    return "".join(chr(0x2400 + ord(c)) if ord(c) < 32 else ("␡" if c == "\x7f" else c) for c in text)


def _short(text: str) -> str:
    text = _visible(" ".join(text.split()))
    return text if len(text) <= TEXT_PREVIEW else text[: TEXT_PREVIEW - 1] + "…"


def text_change(old: str, new: str) -> tuple[str, str]:
    """The two texts around where they differ (not both cut at the same prefix, which hid the change)."""
    old, new = _visible(old), _visible(new)
    start = 0
    while start < min(len(old), len(new)) and old[start] == new[start]:
        start += 1
    end = 0
    while end < min(len(old), len(new)) - start and old[-1 - end] == new[-1 - end]:
        end += 1
    lead = max(0, start - CONTEXT)

    def window(text: str) -> str:
        part = text[lead: len(text) - end]
        tail = text[len(text) - end:]
        part = part if len(part) <= TEXT_PREVIEW else part[: TEXT_PREVIEW - 1] + "…"
        return ("…" if lead else "") + part + (tail[:CONTEXT] + ("…" if len(tail) > CONTEXT else "") if tail else "")

    return window(old), window(new)


def prompt_change(old: Any, changes: dict[str, Any]) -> str:
    """`prompt #12 label safe → unsafe, category a → b` from the prompt before and the changed fields."""
    parts = []
    if "label" in changes:
        parts.append(f"label {old.label} → {changes['label']}")
    if "category" in changes:
        parts.append(f"category {old.category_code or 'none'} → {changes['category'] or 'none'}")
    if "text" in changes:
        before, after = text_change(old.text, changes["text"])
        parts.append(f"text “{before}” → “{after}”")
    return f"prompt #{old.id} " + (", ".join(parts) or "unchanged")


def pair_change(pair: Any, status: str, note: str | None = None) -> str:
    if note is not None:
        return f"pair #{pair.id} note “{_short(getattr(pair, 'note', None) or '')}” → “{_short(note)}”"
    return f"pair #{pair.id} {pair.status} → {status}"
