"""Contrast sets: one unsafe prompt with N safe variants (the Safety-Contrast layout).

Three layouts:
- wide CSV/TSV/Parquet: `prompt, variant_1, ..., variant_N` (optional `id`, `category`, `pair_type`);
- long CSV/TSV: one row per prompt, `set_id, label, prompt` — each set has one unsafe row and
  one or more safe rows (optional `category` on the unsafe row);
- JSON lines / JSON array: `{"id": ..., "prompt": ..., "variants": [...], "category": ...}`.
"""

from __future__ import annotations

import re

from taxonomy_store.errors import InputFileError
from taxonomy_store.importers.records import PairRecord, ParsedFile, PromptRecord
from taxonomy_store.importers.tabular import Table, cell, parse_label, prompt_text, row_key

_VARIANT = re.compile(r"^variant_(\d+)$")


def variant_columns(columns: list[str]) -> list[str]:
    found = [(int(m.group(1)), c) for c in columns if (m := _VARIANT.match(c))]
    return [c for _, c in sorted(found)]


def _set(table, rownum, key, unsafe_text, safe_texts, category, pair_type, prompts, pairs, columns):
    unsafe_col, safe_cols = columns
    prompts.append(PromptRecord(f"{key}/unsafe", unsafe_text, "unsafe", rownum, category, "category", unsafe_col))
    for j, (text, col, row_of) in enumerate(safe_texts, start=1):
        skey = f"{key}/variant_{j}"
        # The category names the harm of the unsafe prompt; its safe variants are not that harm.
        prompts.append(PromptRecord(skey, text, "safe", row_of, None, None, col))
        pairs.append(PairRecord(key=skey, unsafe_key=f"{key}/unsafe", safe_key=skey, row=row_of, pair_type=pair_type))


def parse_contrast_wide(table: Table) -> ParsedFile:
    table.require("prompt", what="the wide contrast format")
    variants = variant_columns(table.columns)
    if not variants:
        raise InputFileError(table.path, "no variant_1..variant_N columns", row=1, column="variant_1")
    prompts: list[PromptRecord] = []
    pairs: list[PairRecord] = []
    seen: dict[str, int] = {}
    for rownum, row in table.rows:
        key = row_key(table, rownum, row, seen)
        unsafe = prompt_text(table, rownum, row, "prompt")
        safe = [(prompt_text(table, rownum, row, c), c, rownum) for c in variants if cell(table, rownum, row, c, required=False)]
        if not safe:
            raise InputFileError(table.path, "unmatched pair: an unsafe prompt without any safe variant", row=rownum, column=variants[0])
        category = cell(table, rownum, row, "category", required=False) or None
        ptype = cell(table, rownum, row, "pair_type", required=False) or None
        _set(table, rownum, key, unsafe, safe, category, ptype, prompts, pairs, ("prompt", None))
    return ParsedFile(table.path, "contrast-wide", prompts, pairs, pair_kind="contrast")


def parse_contrast_long(table: Table) -> ParsedFile:
    table.require("set_id", "label", "prompt", what="the long contrast format")
    groups: dict[str, list[tuple[int, dict]]] = {}
    for rownum, row in table.rows:
        groups.setdefault(cell(table, rownum, row, "set_id", what="set id"), []).append((rownum, row))
    prompts: list[PromptRecord] = []
    pairs: list[PairRecord] = []
    for key, rows in groups.items():
        unsafe_rows: list[tuple[int, dict]] = []
        safe_rows: list[tuple[int, dict]] = []
        for rownum, row in rows:
            label = parse_label(table, rownum, row.get("label"), "label")
            if label == "unlabeled":
                raise InputFileError(table.path, "contrast rows must be safe or unsafe", row=rownum, column="label")
            (unsafe_rows if label == "unsafe" else safe_rows).append((rownum, row))
        first = rows[0][0]
        if len(unsafe_rows) != 1:
            where = unsafe_rows[1][0] if unsafe_rows else first
            raise InputFileError(
                table.path, f"set {key!r} has {len(unsafe_rows)} unsafe prompts; a contrast set has exactly one",
                row=where, column="label",
            )
        if not safe_rows:
            raise InputFileError(table.path, f"unmatched pair: set {key!r} has no safe variant", row=first, column="set_id")
        urow, u = unsafe_rows[0]
        category = cell(table, urow, u, "category", required=False) or None
        ptype = cell(table, urow, u, "pair_type", required=False) or None
        safe = [(prompt_text(table, r, row, "prompt"), "prompt", r) for r, row in safe_rows]
        _set(table, urow, key, prompt_text(table, urow, u, "prompt"), safe, category, ptype, prompts, pairs, ("prompt", None))
    return ParsedFile(table.path, "contrast-long", prompts, pairs, pair_kind="contrast")


def parse_contrast_json(table: Table) -> ParsedFile:
    table.require("prompt", "variants", what="the JSON contrast format")
    prompts: list[PromptRecord] = []
    pairs: list[PairRecord] = []
    seen: dict[str, int] = {}
    for rownum, row in table.rows:
        key = row_key(table, rownum, row, seen, id_per_row=True)
        unsafe = prompt_text(table, rownum, row, "prompt")
        variants = row.get("variants")
        if not isinstance(variants, list):
            raise InputFileError(table.path, "'variants' must be a list of texts", row=rownum, column="variants")
        safe = []
        for v in variants:
            if not isinstance(v, str) or not v.strip():
                raise InputFileError(table.path, "empty or non-text variant", row=rownum, column="variants")
            safe.append((prompt_text(table, rownum, {"variants": v}, "variants"), "variants", rownum))
        if not safe:
            raise InputFileError(table.path, "unmatched pair: an unsafe prompt without any safe variant", row=rownum, column="variants")
        category = cell(table, rownum, row, "category", required=False) or None
        ptype = cell(table, rownum, row, "pair_type", required=False) or None
        _set(table, rownum, key, unsafe, safe, category, ptype, prompts, pairs, ("prompt", None))
    return ParsedFile(table.path, "contrast-jsonl", prompts, pairs, pair_kind="contrast")
