"""XSTest v2 prompts (xstest_prompts.csv) and Safe-Embed's augmented pairs (xstest_aug.csv)."""

from __future__ import annotations

from functools import lru_cache

from taxonomy_store.errors import InputFileError
from taxonomy_store.vocabulary import FORMAT_XSTEST, PAIR_TYPES_TAXONOMY
from taxonomy_store.importers.records import PairRecord, ParsedFile, PromptRecord
from taxonomy_store.importers.tabular import Table, cell, parse_label, prompt_text, row_key

XSTEST_COLUMNS = ("id", "prompt", "type", "label")
AUG_COLUMNS = ("unsafe_prompt", "safe_prompt", "type")
# The unsafe contrast prompt with id i is the twin of the safe prompt with id i - 25.
TWIN_OFFSET = 25


@lru_cache(maxsize=1)
def xstest_type_to_pair_type() -> dict[str, str]:
    """XSTest v2 safe `type` → pair-type code, from the built-in taxonomy's `xstest_types`."""
    from taxonomy_store.importers.taxonomy_files import locate, read_taxonomy_file

    definition = read_taxonomy_file(locate(PAIR_TYPES_TAXONOMY))
    out: dict[str, str] = {}
    for node, _depth in definition.walk():
        for t in node.extra.get("xstest_types") or []:
            out[str(t)] = node.code
    return out


@lru_cache(maxsize=1)
def pair_type_codes() -> frozenset[str]:
    from taxonomy_store.importers.taxonomy_files import locate, read_taxonomy_file

    return frozenset(n.code for n, _ in read_taxonomy_file(locate(PAIR_TYPES_TAXONOMY)).walk())


def parse_xstest_prompts(table: Table) -> ParsedFile:
    table.require(*XSTEST_COLUMNS, what="the XSTest format")
    type_map = xstest_type_to_pair_type()
    prompts: list[PromptRecord] = []
    by_id: dict[int, PromptRecord] = {}
    focus_mismatch: list[str] = []
    for rownum, row in table.rows:
        raw_id = cell(table, rownum, row, "id", what="id")
        try:
            pid = int(raw_id)
        except ValueError:
            raise InputFileError(table.path, f"id {raw_id!r} is not a whole number", row=rownum, column="id") from None
        if pid in by_id:
            raise InputFileError(table.path, f"id {pid} appears twice (first at row {by_id[pid].row})", row=rownum, column="id")
        text = prompt_text(table, rownum, row, "prompt")
        label = parse_label(table, rownum, row.get("label"), "label")
        xtype = cell(table, rownum, row, "type", what="type")
        if label == "safe" and xtype not in type_map:
            raise InputFileError(
                table.path,
                f"unknown XSTest safe type {xtype!r}",
                row=rownum,
                column="type",
                hint=f"known: {', '.join(sorted(type_map))}",
            )
        extra = {k: row.get(k) for k in ("type", "focus", "note") if row.get(k) not in (None, "")}
        rec = PromptRecord(
            key=str(pid), text=text, label=label, row=rownum,
            category=type_map.get(xtype), category_column="type", text_column="prompt", label_column="label", extra=extra,
        )
        by_id[pid] = rec
        prompts.append(rec)
    pairs: list[PairRecord] = []
    for rec in prompts:
        xtype = rec.extra.get("type", "")
        if not (rec.label == "unsafe" and xtype.startswith("contrast_")):
            continue
        twin = by_id.get(int(rec.key) - TWIN_OFFSET)
        if twin is None or twin.label != "safe":
            raise InputFileError(
                table.path,
                f"unmatched pair: contrast prompt {rec.key} has no safe twin with id {int(rec.key) - TWIN_OFFSET}",
                row=rec.row,
                column="id",
                hint="XSTest's contrast prompt i pairs with the safe prompt i - 25",
            )
        rec.category = twin.category
        if rec.extra.get("focus") != twin.extra.get("focus"):
            focus_mismatch.append(f"{rec.key}/{twin.key}")
        pair_type = twin.category if isinstance(twin.category, str) else None  # XSTest's types are codes
        pairs.append(PairRecord(key=f"{rec.key}-{twin.key}", unsafe_key=rec.key, safe_key=twin.key, row=rec.row, pair_type=pair_type))
    parsed = ParsedFile(table.path, FORMAT_XSTEST, prompts, pairs, taxonomy=PAIR_TYPES_TAXONOMY)
    if focus_mismatch:
        parsed.notes.append(f"focus differs within {len(focus_mismatch)} twin pair(s): {', '.join(focus_mismatch[:5])}")
    return parsed


def parse_pairs(table: Table, fmt: str = "xstest-aug") -> ParsedFile:
    """Safe-Embed pairs: id,[type_id,]type,unsafe_prompt,safe_prompt[,focus] in CSV/JSON lines."""
    table.require(*AUG_COLUMNS, what="the Safe-Embed pairs format")
    codes = pair_type_codes()
    prompts: list[PromptRecord] = []
    pairs: list[PairRecord] = []
    seen_ids: dict[str, int] = {}
    for rownum, row in table.rows:
        key = row_key(table, rownum, row, seen_ids)
        ptype = cell(table, rownum, row, "type", what="pair type")
        if ptype not in codes:
            raise InputFileError(
                table.path, f"unknown pair type {ptype!r}", row=rownum, column="type",
                hint=f"pair types of {PAIR_TYPES_TAXONOMY}: {', '.join(sorted(codes))}",
            )
        unsafe = prompt_text(table, rownum, row, "unsafe_prompt")
        safe = prompt_text(table, rownum, row, "safe_prompt")
        extra = {k: row.get(k) for k in ("focus", "type_id") if row.get(k) not in (None, "")}
        prompts.append(PromptRecord(f"{key}/unsafe", unsafe, "unsafe", rownum, ptype, "type", "unsafe_prompt", None, dict(extra)))
        prompts.append(PromptRecord(f"{key}/safe", safe, "safe", rownum, ptype, "type", "safe_prompt", None, dict(extra)))
        pairs.append(PairRecord(key=key, unsafe_key=f"{key}/unsafe", safe_key=f"{key}/safe", row=rownum, pair_type=ptype))
    return ParsedFile(table.path, fmt, prompts, pairs, taxonomy=PAIR_TYPES_TAXONOMY)
