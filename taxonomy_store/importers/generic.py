"""Generic tables mapped with --map target=column, and tstore's own exports.

Targets: text (required), label, category, id, pair_with. A fixed --label stands in for a label
column. `pair_with` names the id of the row this one pairs with (one side safe, one unsafe).
"""

from __future__ import annotations

import json

from taxonomy_store.errors import InputFileError
from taxonomy_store.text import text_sha256
from taxonomy_store.vocabulary import JUDGED_LABELS, LABELS
from taxonomy_store.importers.records import PairRecord, ParsedFile, PromptRecord
from taxonomy_store.importers.tabular import Table, cell, parse_label, prompt_text

TARGETS = ("text", "label", "category", "id", "pair_with")
# Column names tried when --map does not name a target.
DEFAULT_COLUMNS = {
    "text": ("text", "prompt", "question"),
    "label": ("label",),
    "category": ("category",),
    "id": ("id",),
    "pair_with": ("pair_with",),
}
PROMPTS_EXPORT_COLUMNS = ("text", "label", "taxonomy", "category", "dataset", "source_key")
PAIRS_EXPORT_COLUMNS = ("pair_set", "kind", "pair_type", "status", "unsafe_text", "safe_text")


def resolve_mapping(table: Table, mapping: dict[str, str] | None, label: str | None) -> dict[str, str]:
    mapping = dict(mapping or {})
    for target, column in mapping.items():
        if target not in TARGETS:
            raise InputFileError(
                table.path, f"--map {target}={column}: unknown target {target!r}", row=1,
                hint=f"targets: {', '.join(TARGETS)}",
            )
        if column not in table.columns:
            raise InputFileError(
                table.path, f"--map {target}={column}: the file has no column {column!r} (columns: {', '.join(table.columns)})",
                row=1, column=column,
            )
    for target, candidates in DEFAULT_COLUMNS.items():
        if target not in mapping:
            for c in candidates:
                if c in table.columns:
                    mapping[target] = c
                    break
    if "text" not in mapping:
        raise InputFileError(
            table.path, f"no text column (columns: {', '.join(table.columns)})", row=1,
            hint="name it with --map text=COLUMN",
        )
    if label is not None:
        mapping.pop("label", None)
    elif "label" not in mapping:
        raise InputFileError(table.path, "no label column", row=1, hint="name it with --map label=COLUMN, or give --label safe|unsafe")
    return mapping


def parse_generic(table: Table, mapping: dict[str, str] | None = None, label: str | None = None) -> ParsedFile:
    if label is not None and label not in LABELS:
        raise InputFileError(table.path, f"--label {label!r} is not one of {', '.join(LABELS)}")
    m = resolve_mapping(table, mapping, label)
    prompts: list[PromptRecord] = []
    by_key: dict[str, PromptRecord] = {}
    partner: list[tuple[PromptRecord, str]] = []
    extra_columns = [c for c in table.columns if c not in m.values()]
    for rownum, row in table.rows:
        key = cell(table, rownum, row, m["id"], what="id") if "id" in m else str(rownum)
        if key in by_key:
            raise InputFileError(table.path, f"id {key!r} appears twice (first at row {by_key[key].row})", row=rownum, column=m.get("id"))
        text = prompt_text(table, rownum, row, m["text"])
        lab = label if label is not None else parse_label(table, rownum, row.get(m["label"]), m["label"])
        category = cell(table, rownum, row, m["category"], required=False) or None if "category" in m else None
        extra = {k: v for k in extra_columns if (v := row.get(k)) not in (None, "") and isinstance(v, (str, int, float, bool))}
        rec = PromptRecord(key, text, lab, rownum, category, m.get("category"), m["text"], m.get("label"), extra)
        by_key[key] = rec
        prompts.append(rec)
        if "pair_with" in m:
            other = cell(table, rownum, row, m["pair_with"], required=False)
            if other:
                partner.append((rec, other))
    pairs: list[PairRecord] = []
    done: set[frozenset] = set()
    for rec, other_key in partner:
        twin = by_key.get(other_key)
        if twin is None:
            raise InputFileError(
                table.path, f"unmatched pair: pair_with {other_key!r} names no row of this file", row=rec.row, column=m["pair_with"]
            )
        if {rec.label, twin.label} != set(JUDGED_LABELS):
            raise InputFileError(
                table.path, f"a pair needs one safe and one unsafe prompt; row {twin.row} is {twin.label}, this row is {rec.label}",
                row=rec.row, column=m["pair_with"],
            )
        both = frozenset((rec.key, twin.key))
        if both in done:
            continue
        done.add(both)
        unsafe, safe = (rec, twin) if rec.label == "unsafe" else (twin, rec)
        pairs.append(PairRecord(key=f"{unsafe.key}|{safe.key}", unsafe_key=unsafe.key, safe_key=safe.key, row=rec.row))
    return ParsedFile(table.path, "generic", prompts, pairs)


def parse_prompts_export(table: Table) -> ParsedFile:
    """`tstore export` prompts: matched to existing prompts by text, datasets kept per row."""
    table.require("text", "label", what="tstore's prompt export")
    prompts = []
    for rownum, row in table.rows:
        text = prompt_text(table, rownum, row, "text")
        label = parse_label(table, rownum, row.get("label"), "label")
        category = cell(table, rownum, row, "category", required=False) or None
        taxonomy = cell(table, rownum, row, "taxonomy", required=False) or None
        if category and not taxonomy:
            raise InputFileError(table.path, "a category needs its taxonomy", row=rownum, column="taxonomy")
        dataset = cell(table, rownum, row, "dataset", required=False) or None
        key = cell(table, rownum, row, "source_key", required=False) or f"sha256:{text_sha256(text)[:16]}"
        prompts.append(
            PromptRecord(key, text, label, rownum, category, "category", "text", "label", dataset=dataset, taxonomy=taxonomy)
        )
        for other_dataset, other_key in _also_in(table, rownum, row):
            prompts.append(PromptRecord(other_key, text, label, rownum, category, "category", "text", "label",
                                        dataset=other_dataset, taxonomy=taxonomy, membership=True))
    return ParsedFile(table.path, "tstore-prompts", prompts, match_by_text=True)


def _also_in(table: Table, rownum: int, row: dict) -> list[tuple[str, str]]:
    """The prompt's other dataset rows, as the export writes them: a JSON list of [dataset, key]."""
    raw = row.get("also_in")
    if raw in (None, ""):
        return []
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
        pairs = [(str(d), str(k)) for d, k in value]
    except (ValueError, TypeError):
        raise InputFileError(table.path, "also_in is not a JSON list of [dataset, source_key] pairs", row=rownum, column="also_in",
                             hint='write it as tstore export does, e.g. [["xstest_aug", "12"]], or leave it empty') from None
    return pairs


def parse_pairs_export(table: Table) -> ParsedFile:
    """`tstore export --pairs`: both texts matched to existing prompts by text."""
    table.require("unsafe_text", "safe_text", what="tstore's pair export")
    prompts: dict[str, PromptRecord] = {}
    pairs = []
    for rownum, row in table.rows:
        keys = []
        for side, label in (("unsafe_text", "unsafe"), ("safe_text", "safe")):
            text = prompt_text(table, rownum, row, side)
            key = f"sha256:{text_sha256(text)[:16]}"
            if key in prompts and prompts[key].label != label:
                raise InputFileError(table.path, f"this text is {prompts[key].label} at row {prompts[key].row}", row=rownum, column=side)
            prompts.setdefault(key, PromptRecord(key, text, label, rownum, None, None, side))
            keys.append(key)
        status = cell(table, rownum, row, "status", required=False) or "accepted"
        if status not in ("proposed", "accepted", "rejected"):
            raise InputFileError(table.path, f"unknown pair status {status!r}", row=rownum, column="status")
        pairs.append(
            PairRecord(
                key=f"{keys[0]}|{keys[1]}", unsafe_key=keys[0], safe_key=keys[1], row=rownum,
                pair_type=cell(table, rownum, row, "pair_type", required=False) or None, status=status,
                pair_set=cell(table, rownum, row, "pair_set", required=False) or None,
                kind=cell(table, rownum, row, "kind", required=False) or None,
                note=cell(table, rownum, row, "note", required=False) or None,
            )
        )
    return ParsedFile(table.path, "tstore-pairs", list(prompts.values()), pairs, match_by_text=True)
