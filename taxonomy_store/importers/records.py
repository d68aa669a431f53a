"""Plain records that importers produce and `Imports` writes: no SQL here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

# A category as the file gives it: a code or exact node name (str), or a path of exact node
# names from the root down (tuple), e.g. Do-Not-Answer's risk_area/types_of_harm/specific_harms.
CategoryRef = Union[str, tuple, None]

from taxonomy_store.text import MAX_TEXT_CHARS  # one limit for every entry point

__all__ = ["MAX_TEXT_CHARS", "CategoryRef", "PromptRecord", "PairRecord", "ParsedFile"]


@dataclass
class PromptRecord:
    key: str  # the row's source key inside its dataset (the idempotency key)
    text: str
    label: str
    row: int  # where the file gives it (header = row 1 for tables, line number for JSON lines)
    category: CategoryRef = None
    category_column: str | None = None
    text_column: str | None = None
    label_column: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    dataset: str | None = None  # tstore exports carry the prompt's own dataset per row
    taxonomy: str | None = None  # tstore exports carry the category's taxonomy per row
    # tstore exports: one more dataset row of the prompt above (`also_in`), not a row of the file
    membership: bool = False


@dataclass
class PairRecord:
    key: str
    unsafe_key: str  # PromptRecord.key of the unsafe side
    safe_key: str
    row: int
    pair_type: str | None = None
    status: str = "accepted"
    pair_set: str | None = None  # tstore exports carry their pair set per row
    kind: str | None = None
    note: str | None = None


@dataclass
class ParsedFile:
    path: Path
    format: str
    prompts: list[PromptRecord]
    pairs: list[PairRecord] = field(default_factory=list)
    # Taxonomy that the categories belong to (None: decided from the values, or no categories).
    taxonomy: str | None = None
    # Pair set kind: "challenging" (one safe twin) or "contrast" (several safe variants).
    pair_kind: str = "challenging"
    # tstore's own exports: rows match existing prompts by text, not by source key.
    match_by_text: bool = False
    notes: list[str] = field(default_factory=list)
