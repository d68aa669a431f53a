"""Crosswalk rows as files a team keeps in git: CSV or JSON, the same columns either way. Pure: no SQL."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

from taxonomy_store.errors import InputFileError
from taxonomy_store.vocabulary import PAIR_STATUSES

FILE_COLUMNS = ("source_taxonomy", "source", "target_taxonomy", "target", "weight", "status", "note")
FORMATS = ("csv", "json")


def format_of(path: str | Path, fmt: str | None) -> str:
    if fmt:
        return fmt
    return "json" if str(path).lower().endswith(".json") else "csv"


def dumps(rows: list[dict[str, Any]], fmt: str) -> str:
    """The rows (dicts with FILE_COLUMNS) as CSV or a JSON array."""
    clean = [{c: r.get(c) for c in FILE_COLUMNS} for r in rows]
    if fmt == "json":
        return json.dumps(clean, indent=2, ensure_ascii=False) + "\n"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FILE_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in clean:
        w.writerow({k: "" if v is None else v for k, v in r.items()})
    return buf.getvalue()


def parse(path: str | Path, text: str, fmt: str) -> list[dict[str, Any]]:
    """Validated rows of a crosswalk file, or InputFileError naming the row and column."""
    if fmt == "json":
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise InputFileError(str(path), f"not JSON: {exc}", hint="give a JSON array of objects, or a .csv file") from None
        if not isinstance(raw, list) or not all(isinstance(r, dict) for r in raw):
            raise InputFileError(str(path), "expected a JSON array of objects", hint=f"keys: {', '.join(FILE_COLUMNS)}")
        numbered = list(enumerate(raw, start=1))
    else:
        reader = csv.DictReader(io.StringIO(text))
        missing = [c for c in FILE_COLUMNS[:4] if c not in (reader.fieldnames or [])]
        if missing:
            raise InputFileError(str(path), f"missing column {missing[0]!r}", row=1, hint=f"columns: {', '.join(FILE_COLUMNS)}")
        numbered = list(enumerate(reader, start=2))
    return [_row(path, n, r) for n, r in numbered]


def _row(path, n: int, r: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c in FILE_COLUMNS[:4]:
        v = r.get(c)
        if v is None or not str(v).strip():
            raise InputFileError(str(path), f"empty {c}", row=n, column=c)
        out[c] = str(v).strip()
    weight = r.get("weight")
    try:
        out["weight"] = 1.0 if weight in (None, "") else float(weight)
    except (TypeError, ValueError):
        raise InputFileError(str(path), f"weight {weight!r} is not a number", row=n, column="weight") from None
    if not math.isfinite(out["weight"]) or not 0.0 <= out["weight"] <= 1.0:
        raise InputFileError(str(path), f"weight {weight!r} is not in [0, 1]", row=n, column="weight")
    status = (r.get("status") or "accepted").strip() if isinstance(r.get("status") or "accepted", str) else r.get("status")
    if status not in PAIR_STATUSES:
        raise InputFileError(str(path), f"unknown status {status!r}", row=n, column="status", hint=f"one of {', '.join(PAIR_STATUSES)}")
    out["status"] = status
    note = r.get("note")
    out["note"] = None if note in (None, "") else str(note)
    return out
