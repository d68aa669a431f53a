"""Importers: each turns a data file into validated plain records (no SQL) or raises InputFileError.

`parse_file(path)` reads the bytes once, detects the format from the header unless one is
given, and returns a `ParsedFile`; `Imports` (taxonomy_store/transfer/imports.py) writes it.
"""

from __future__ import annotations

from pathlib import Path

from taxonomy_store.errors import InputFileError
from taxonomy_store.paths import read_input_bytes
from taxonomy_store.vocabulary import FILE_KINDS, FORMAT_DO_NOT_ANSWER, IMPORT_FORMATS, LABELS
from taxonomy_store.importers.contrast import parse_contrast_json, parse_contrast_long, parse_contrast_wide, variant_columns
from taxonomy_store.importers.do_not_answer import parse_do_not_answer
from taxonomy_store.importers.generic import PROMPTS_EXPORT_COLUMNS, parse_generic, parse_pairs_export, parse_prompts_export
from taxonomy_store.importers.records import MAX_TEXT_CHARS, PairRecord, ParsedFile, PromptRecord
from taxonomy_store.importers.tabular import Table, read_table
from taxonomy_store.importers.xstest import parse_pairs, parse_xstest_prompts

FORMATS = IMPORT_FORMATS
# Bare file kinds are accepted as --format too: they mean "generic, read as this kind".
KINDS = FILE_KINDS

__all__ = [
    "FORMATS", "KINDS", "LABELS", "MAX_TEXT_CHARS", "PairRecord", "ParsedFile", "PromptRecord", "detect_format",
    "parse_file", "read_file_bytes",
]


def detect_format(table: Table) -> str | None:
    cols = set(table.columns)
    if {"risk_area", "types_of_harm", "specific_harms", "question"} <= cols:
        return FORMAT_DO_NOT_ANSWER
    if {"unsafe_text", "safe_text"} <= cols:
        return "tstore-pairs"
    if {"unsafe_prompt", "safe_prompt", "type"} <= cols:
        return "xstest-aug" if "type_id" in cols else "pairs"
    if {"id", "prompt", "type", "label", "focus"} <= cols:
        return "xstest"
    if {"set_id", "label", "prompt"} <= cols:
        return "contrast-long"
    if "prompt" in cols and variant_columns(table.columns):
        return "contrast-wide"
    if {"prompt", "variants"} <= cols:
        return "contrast-jsonl"
    if set(PROMPTS_EXPORT_COLUMNS) <= cols:
        return "tstore-prompts"
    return None


def read_file_bytes(path: Path) -> bytes:
    """The file's bytes; each way of not being a readable file gets its own message (paths.py)."""
    return read_input_bytes(path)


def parse_file(
    path: str | Path,
    *,
    format: str | None = None,
    mapping: dict[str, str] | None = None,
    label: str | None = None,
    data: bytes | None = None,
) -> ParsedFile:
    path = Path(path)
    if data is None:
        data = read_file_bytes(path)
    kind = format if format in KINDS else None
    if format is not None and format not in FORMATS and format not in KINDS:
        raise InputFileError(path, f"unknown format {format!r}", hint=f"formats: {', '.join(FORMATS + KINDS)}")
    table = read_table(path, data, kind)
    fmt = format if format in FORMATS else None
    if fmt is None:
        fmt = "generic" if (mapping or label) else detect_format(table)
    if fmt is None:
        if any(c in table.columns for c in ("text", "prompt")) and "label" in table.columns:
            fmt = "generic"
        else:
            raise InputFileError(
                path,
                f"cannot tell the format from the header (columns: {', '.join(table.columns)})",
                row=1,
                hint="give --format, or --map text=COLUMN with --map label=COLUMN or --label",
            )
    if (mapping or label) and fmt != "generic":
        raise InputFileError(path, f"--map and --label apply to generic files, not to the {fmt} format", hint="add --format generic")
    if fmt == "generic":
        return parse_generic(table, mapping, label)
    return PARSERS[fmt](table, fmt)


# Format name -> parser of a table in that format (generic files also take --map and --label).
PARSERS = {
    "xstest": lambda table, fmt: parse_xstest_prompts(table),
    "xstest-aug": parse_pairs,
    "pairs": parse_pairs,
    FORMAT_DO_NOT_ANSWER: lambda table, fmt: parse_do_not_answer(table),
    "contrast-wide": lambda table, fmt: parse_contrast_wide(table),
    "contrast-long": lambda table, fmt: parse_contrast_long(table),
    "contrast-jsonl": lambda table, fmt: parse_contrast_json(table),
    "tstore-prompts": lambda table, fmt: parse_prompts_export(table),
    "tstore-pairs": lambda table, fmt: parse_pairs_export(table),
}
