"""Reading CSV, TSV, JSON lines, JSON arrays and Parquet into (row number, dict) rows.

Every problem becomes an InputFileError naming the file, the row and the column.
Row numbers: for CSV/TSV the header is row 1 and the first record row 2 (as a spreadsheet shows
them; a record with line breaks inside quotes is still one row); for JSON lines the line number;
for JSON arrays and Parquet the element index + 1.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taxonomy_store.errors import InputFileError
from taxonomy_store.importers.records import MAX_TEXT_CHARS

# Response columns of Do-Not-Answer run to tens of KB; anything beyond this is a broken file.
MAX_FIELD_CHARS = 1_000_000
TABLE_KINDS = ("csv", "tsv", "jsonl", "json", "parquet")


@dataclass
class Table:
    path: Path
    kind: str
    columns: list[str]
    rows: list[tuple[int, dict[str, Any]]]
    # Parquet only: each column's Arrow type, so a text column of numbers or bytes is refused
    # instead of being turned into "12345" or "b'...'".
    arrow_types: dict[str, Any] = field(default_factory=dict)

    def require(self, *names: str, what: str = "this format") -> None:
        missing = [n for n in names if n not in self.columns]
        if missing:
            raise InputFileError(
                self.path,
                f"missing column {missing[0]!r} needed by {what} (columns: {', '.join(self.columns) or 'none'})",
                row=1,
                column=missing[0],
                hint="check the header, or give --format / --map",
            )


def guess_kind(path: Path, data: bytes) -> str:
    suffix = path.suffix.lower()
    if data[:4] == b"PAR1" or suffix == ".parquet":
        return "parquet"
    if suffix == ".tsv":
        return "tsv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"[":
        return "json"
    if head == b"{":
        return "jsonl"
    return "csv"


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputFileError(
            path,
            f"not valid UTF-8: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line})",
            row=line,
            hint="save the file as UTF-8",
        ) from exc


def _check_utf16(path: Path, data: bytes) -> None:
    """UTF-16 text is half NUL bytes: name the encoding rather than calling the file binary."""
    head = data[:4096]
    bom = head[:2] in (b"\xff\xfe", b"\xfe\xff")
    half = len(head) // 2
    zeros = sorted((head[0::2].count(0), head[1::2].count(0)))
    # ASCII-range text in UTF-16 puts a NUL in every other byte, on one side only.
    zero_side = half >= 2 and zeros[1] > 0.4 * half and zeros[0] < 0.05 * half
    if bom or zero_side:
        raise InputFileError(
            path, "the file is UTF-16 text; tstore reads UTF-8",
            hint="save it as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8 FILE > FILE.utf8.csv`)",
        )


def _check_binary(path: Path, data: bytes) -> None:
    head = data[:65536]
    nul = head.find(b"\x00")
    if nul < 0:
        return
    # A text file with a stray NUL inside one cell is reported at that cell (after parsing);
    # undecodable bytes or many NULs mean the file is not text at all.
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        text_like = head.count(b"\x00") <= max(4, len(head) // 100)
    except UnicodeDecodeError:
        text_like = False
    if not text_like:
        line = data[:nul].count(b"\n") + 1
        raise InputFileError(
            path,
            f"looks like a binary file (NUL byte at offset {nul}), not CSV/TSV/JSON text",
            row=line,
            hint="give a CSV, TSV, JSON lines, JSON or Parquet file",
        )


def _nul_in(value: Any) -> int:
    """Offset of the first NUL in a cell (looking into JSON lists and objects), or -1."""
    if isinstance(value, str):
        return value.find("\x00")
    if isinstance(value, (list, tuple)):
        values = value
    elif isinstance(value, dict):
        values = list(value.keys()) + list(value.values())
    else:
        return -1
    for v in values:
        at = _nul_in(v)
        if at >= 0:
            return at
    return -1


def reject_nul_cells(table: Table) -> None:
    """NUL anywhere in a cell is refused with its row and column: PostgreSQL cannot store it,
    and SQLite would keep a text that no terminal shows as it is."""
    for rownum, row in table.rows:
        for column, value in row.items():
            at = _nul_in(value)
            if at >= 0:
                raise InputFileError(
                    table.path, f"NUL character (\\x00) in the cell at character {at + 1}", row=rownum, column=column,
                    hint="remove the NUL bytes from the file (e.g. `tr -d '\\000' < FILE > FIXED`)",
                )


def read_table(path: Path, data: bytes, kind: str | None = None) -> Table:
    if not data.strip():
        raise InputFileError(path, "the file is empty", hint="give a file with a header and at least one row")
    kind = kind or guess_kind(path, data)
    if kind == "parquet":
        return _read_parquet(path, data)
    _check_utf16(path, data)
    _check_binary(path, data)
    text = _decode(path, data)
    if kind in ("csv", "tsv"):
        table = _read_csv(path, text, "\t" if kind == "tsv" else ",", kind)
    elif kind == "jsonl":
        table = _read_jsonl(path, text)
    elif kind == "json":
        table = _read_json(path, text)
    else:
        raise InputFileError(path, f"unknown file kind {kind!r}", hint=f"one of {', '.join(TABLE_KINDS)}")
    # A NUL reaches a cell as a raw byte (CSV/TSV) or as a \u0000 escape (JSON): only then look.
    if "\x00" in text or "\\u0000" in text:
        reject_nul_cells(table)
    return table


def _read_csv(path: Path, text: str, delimiter: str, kind: str) -> Table:
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[tuple[int, dict[str, Any]]] = []
    header: list[str] | None = None
    record = 0
    try:
        for record, values in enumerate(reader, start=1):
            if header is None:
                header = [h.strip() for h in values]
                if not any(header):
                    raise InputFileError(path, "the header row is empty", row=1)
                seen: set[str] = set()
                for h in header:
                    if h in seen:
                        raise InputFileError(path, f"column {h!r} appears twice in the header", row=1, column=h)
                    seen.add(h)
                continue
            if not values or (len(values) == 1 and not values[0].strip()):
                continue  # blank line
            if len(values) > len(header):
                raise InputFileError(
                    path,
                    f"{len(values)} fields but the header has {len(header)} (an unquoted {delimiter!r} in a field?)",
                    row=record,
                    column=f"#{len(header) + 1}",
                )
            rows.append((record, dict(zip(header, values))))
    except csv.Error as exc:
        bad_row = record + 1
        column = _broken_column(text, delimiter, bad_row, header) if (rows or header is not None) else None
        reason, hint = _csv_error_reason(exc, text, delimiter, kind)
        raise InputFileError(path, reason, row=bad_row, column=column, hint=hint) from exc
    if header is None:
        raise InputFileError(path, "the file is empty", hint="give a file with a header and at least one row")
    if not rows:
        raise InputFileError(path, "the file has a header but no rows", row=2)
    return Table(path, kind, header, rows)  # field sizes are bounded by csv.field_size_limit


def _csv_error_reason(exc: csv.Error, text: str, delimiter: str, kind: str) -> tuple[str, str]:
    """(reason, hint) for a CSV/TSV the csv module gave up on."""
    msg = str(exc)
    unclosed = ("the file ends inside a quoted field (a quote is never closed)", "check the quoting around that row")
    if "field larger than field limit" in msg:
        # Blame a quote only when one is really left open: a huge but well-formed field is just huge.
        if _quote_left_open(text, delimiter):
            return unclosed
        return (
            f"a field is larger than {MAX_FIELD_CHARS:,} characters (prompt texts are limited to {MAX_TEXT_CHARS:,})",
            "shorten that field, or check that the row is not several records run together",
        )
    if "unexpected end of data" in msg or "EOF" in msg:
        return unclosed
    return f"malformed {kind.upper()}: {msg}", "check the quoting around that row"


def _quote_left_open(text: str, delimiter: str) -> bool:
    try:
        csv.field_size_limit(2**31 - 1)
        for _ in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc) or "EOF" in str(exc)
    finally:
        csv.field_size_limit(MAX_FIELD_CHARS)
    return False


def _broken_column(text: str, delimiter: str, bad_row: int, header: list[str] | None) -> str | None:
    """The column whose quoted field never closes: parse the broken record leniently."""
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        csv.field_size_limit(2**31 - 1)
        for i, values in enumerate(reader, start=1):
            if i == bad_row:
                big = [j for j, v in enumerate(values) if len(v) > MAX_FIELD_CHARS]
                idx = big[0] if big else len(values) - 1
                if header and 0 <= idx < len(header):
                    return header[idx]
                return f"#{idx + 1}"
    except csv.Error:
        return None
    finally:
        csv.field_size_limit(MAX_FIELD_CHARS)
    return None


def _scalarise(path: Path, rownum: int, obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise InputFileError(path, f"expected a JSON object, found {type(obj).__name__}", row=rownum)
    return obj


def _read_jsonl(path: Path, text: str) -> Table:
    def objects():
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputFileError(
                    path, f"invalid JSON: {exc.msg} (character {exc.colno})", row=lineno, hint="one JSON object per line"
                ) from exc

    return _object_table(path, "jsonl", objects(), "the file has no JSON objects")


def _read_json(path: Path, text: str) -> Table:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"invalid JSON: {exc.msg} (line {exc.lineno}, character {exc.colno})", row=exc.lineno) from exc
    if isinstance(data, dict):
        for key in ("rows", "data", "prompts", "items"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list):
        raise InputFileError(path, "expected a JSON array of objects", hint="or use JSON lines (.jsonl)")
    return _object_table(path, "json", enumerate(data, start=1), "the JSON array is empty")


def _object_table(path: Path, kind: str, numbered, empty: str) -> Table:
    """(row number, JSON value) pairs -> a table whose columns are every key seen, in order."""
    rows: list[tuple[int, dict[str, Any]]] = []
    columns: dict[str, None] = {}
    for rownum, obj in numbered:
        obj = _scalarise(path, rownum, obj)
        for k in obj:
            columns.setdefault(k, None)
        rows.append((rownum, obj))
    if not rows:
        raise InputFileError(path, empty)
    return Table(path, kind, list(columns), rows)


def _read_parquet(path: Path, data: bytes) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except Exception as exc:  # pyarrow raises several kinds for a damaged file
        raise InputFileError(path, f"not a readable Parquet file: {exc}") from exc
    columns = table.column_names
    rows = [(i, r) for i, r in enumerate(table.to_pylist(), start=1)]
    if not rows:
        raise InputFileError(path, "the Parquet file has no rows")
    parsed = Table(path, "parquet", columns, rows, arrow_types={f.name: f.type for f in table.schema})
    if any(_has_nul(table.column(i)) for i in range(table.num_columns)):
        reject_nul_cells(parsed)
    return parsed


def _has_nul(column) -> bool:
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    while pa.types.is_list(kind) or pa.types.is_large_list(kind):
        column, kind = pc.list_flatten(column), kind.value_type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return False
    return bool(pc.any(pc.match_substring(column, "\x00")).as_py())


def _not_text_type(arrow_type) -> str | None:
    """The Arrow type's name when a column of it cannot hold prompt text, else None."""
    import pyarrow as pa

    kind = arrow_type
    while pa.types.is_list(kind) or pa.types.is_large_list(kind):
        kind = kind.value_type  # contrast variants: a list of strings
    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return None
    return str(arrow_type)


def cell(table: Table, rownum: int, row: dict[str, Any], column: str, *, required: bool = True, what: str = "text") -> str:
    """One cell as stripped text; empty → error when required."""
    value = row.get(column)
    if value is None:
        value = ""
    elif not isinstance(value, str):
        if isinstance(value, (dict, list)):
            raise InputFileError(table.path, f"expected {what}, found a JSON {type(value).__name__}", row=rownum, column=column)
        value = str(value)
    value = value.strip()
    if required and not value:
        raise InputFileError(table.path, f"empty {what}", row=rownum, column=column)
    return value


def row_key(table: Table, rownum: int, row: dict[str, Any], seen: dict[str, int], *, id_per_row: bool = False) -> str:
    """The row's source key: its `id` cell (when the file has that column, or with `id_per_row`
    when this row has one), else its row number; an id seen before in the file is an error."""
    has_id = row.get("id") not in (None, "") if id_per_row else "id" in table.columns
    key = cell(table, rownum, row, "id", what="id") if has_id else str(rownum)
    if key in seen:
        raise InputFileError(table.path, f"id {key!r} appears twice (first at row {seen[key]})", row=rownum, column="id")
    seen[key] = rownum
    return key


def prompt_text(table: Table, rownum: int, row: dict[str, Any], column: str) -> str:
    if column in table.arrow_types:
        wrong = _not_text_type(table.arrow_types[column])
        if wrong is not None:
            raise InputFileError(
                table.path, f"text column {column!r} has Arrow type {wrong}, not string", column=column,
                hint="write the prompt texts as strings (Arrow type string), not numbers or bytes",
            )
    value = row.get(column)
    if table.kind in ("json", "jsonl") and isinstance(value, (bool, int, float)):
        raise InputFileError(
            table.path, f"prompt text is a JSON {type(value).__name__}, not a string", row=rownum, column=column,
            hint='quote the text in the file ("text": "12345")',
        )
    text = cell(table, rownum, row, column, what="prompt text")
    if len(text) > MAX_TEXT_CHARS:
        raise InputFileError(
            table.path, f"prompt text of {len(text):,} characters exceeds the limit of {MAX_TEXT_CHARS:,}", row=rownum, column=column
        )
    return text


_LABEL_WORDS = {
    "safe": "safe",
    "unsafe": "unsafe",
    "unlabeled": "unlabeled",
    "unlabelled": "unlabeled",
}


def parse_label(table: Table, rownum: int, value: Any, column: str | None) -> str:
    word = ("" if value is None else str(value)).strip().lower()
    if word in _LABEL_WORDS:
        return _LABEL_WORDS[word]
    shown = str(value)[:40]
    raise InputFileError(
        table.path,
        f"unknown label {shown!r}" if word else "empty label",
        row=rownum,
        column=column,
        hint="labels are safe, unsafe or unlabeled; give --label for a file of one class",
    )
