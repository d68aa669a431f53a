"""Imports at the edges: each bad input ends in `error:` + `hint:` (file, row, column where they
apply), a non-zero exit, no traceback, and a store whose export is byte-identical before and after.
The same file imported by two processes at once: the second waits and is a no-op.

Files are generated in tmp_path. The CLI cases go through `taxonomy_store.cli.app.run` (what the
`tstore` script calls); the concurrent imports are two real `tstore` processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from taxonomy_store.cli import cli
from taxonomy_store.cli.app import run
from taxonomy_store.store import Store, init_store
from taxonomy_store.text import inert

from conftest import export_bytes

BASE_CSV = "text,label\nA stored unsafe prompt about harm,unsafe\nA stored safe prompt about baking,safe\n"


@pytest.fixture(params=["sqlite", "postgresql"])
def base(request, tmp_path) -> list[str]:
    """A store holding two prompts; returns the global CLI options that reach it."""
    db_url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    store_dir = tmp_path / "store"
    store = init_store(store_dir, db_url=db_url)
    try:
        seed = tmp_path / "seed.csv"
        seed.write_text(BASE_CSV, encoding="utf-8")
        store.imports.import_file(seed)
    finally:
        store.close()
    return ["--store", str(store_dir)] + (["--db-url", db_url] if db_url else [])


def exported(options: list[str]) -> bytes:
    """The store as `tstore export` writes it: prompts, then pairs."""
    store = Store.open(options[1], db_url=options[3] if len(options) > 2 else None)
    try:
        return export_bytes(store, Path(options[1]).parent)
    finally:
        store.close()


def refused(options: list[str], path: Path, capsys, *args: str) -> list[str]:
    """Import `path`, expect a clean refusal and an untouched store; the stderr lines."""
    before = exported(options)
    code = run(cli, [*options, "import", str(path), *args])
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1, err
    assert out == "" and "Traceback" not in err
    assert [ln.split(":")[0] for ln in lines] == ["error", "hint"], err
    assert exported(options) == before
    return lines


def _parquet(path: Path, **columns) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize(
    "values, arrow_type",
    [([12345, 678], "int64"), ([1.5, float("nan")], "double"), ([b"\x00\x01", b"bytes"], "binary"), ([True, False], "bool")],
)
def test_parquet_text_column_must_be_strings(base, tmp_path, capsys, values, arrow_type):
    path = _parquet(tmp_path / "p.parquet", text=pa.array(values), label=pa.array(["safe", "unsafe"]))
    error, hint = refused(base, path, capsys)
    assert error == f"error: {path}, column 'text': text column 'text' has Arrow type {arrow_type}, not string"
    assert hint.startswith("hint: write the prompt texts as strings")


@pytest.mark.parametrize("value, kind", [("12345", "int"), ("1.5", "float"), ("true", "bool")])
def test_json_prompt_text_must_be_a_string(base, tmp_path, capsys, value, kind):
    path = tmp_path / "n.jsonl"
    path.write_text(f'{{"text": "fine", "label": "safe"}}\n{{"text": {value}, "label": "safe"}}\n', encoding="utf-8")
    error, _ = refused(base, path, capsys)
    assert error == f"error: {path}, row 2, column 'text': prompt text is a JSON {kind}, not a string"


def test_parquet_list_of_strings_and_dictionary_text_are_accepted(tmp_path, store):
    variants = pa.array([["How to heal a wound?", "How to bake bread?"]])
    path = _parquet(tmp_path / "c.parquet", prompt=pa.array(["How to hurt someone?"]).dictionary_encode(), variants=variants)
    summary = store.imports.import_file(path, format="contrast-jsonl")
    assert (summary.added, summary.pairs_added) == (3, 2)


def _good_rows(n: int) -> list[str]:
    return [f"Harmless question number {i} about gardening,safe" for i in range(n)]


def test_nul_after_the_first_64_kib_names_row_and_column(base, tmp_path, capsys):
    rows = _good_rows(2000)  # about 90 KB before the bad row
    path = tmp_path / "nul.csv"
    path.write_bytes(("text,label\n" + "\n".join(rows) + "\nA prompt with a \x00 inside,unsafe\n").encode())
    assert path.read_bytes().index(b"\x00") > 65536
    error, hint = refused(base, path, capsys)
    assert error == f"error: {path}, row 2002, column 'text': NUL character (\\x00) in the cell at character 17"
    assert hint.startswith("hint: remove the NUL bytes")


def test_nul_in_the_first_kilobyte_of_a_text_file_is_a_cell_not_a_binary_file(base, tmp_path, capsys):
    path = tmp_path / "nul.tsv"
    path.write_bytes(b"text\tlabel\nFine words\tsafe\nBad\x00words\tunsafe\n")
    error, _ = refused(base, path, capsys)
    assert error == f"error: {path}, row 3, column 'text': NUL character (\\x00) in the cell at character 4"


def test_nul_escape_in_json_lines_and_in_parquet(base, tmp_path, capsys):
    jl = tmp_path / "nul.jsonl"
    jl.write_text('{"text": "fine", "label": "safe"}\n{"text": "x", "label": "safe", "note": "a\\u0000b"}\n', encoding="utf-8")
    error, _ = refused(base, jl, capsys)
    assert error == f"error: {jl}, row 2, column 'note': NUL character (\\x00) in the cell at character 2"
    pqf = _parquet(tmp_path / "nul.parquet", text=pa.array(["fine", "bad\x00"]), label=pa.array(["safe", "safe"]))
    error, _ = refused(base, pqf, capsys)
    assert error == f"error: {pqf}, row 2, column 'text': NUL character (\\x00) in the cell at character 4"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_file_says_save_as_utf8(base, tmp_path, capsys, encoding):
    path = tmp_path / "wide.csv"
    path.write_bytes("text,label\nHow do I bake bread?,safe\n".encode(encoding))
    error, hint = refused(base, path, capsys)
    assert error == f"error: {path}: the file is UTF-16 text; tstore reads UTF-8"
    assert hint.startswith("hint: save it as UTF-8")


def test_huge_unquoted_field_does_not_blame_a_quote(base, tmp_path, capsys):
    path = tmp_path / "big.csv"
    path.write_bytes(("text,label\nFine,safe\n" + "y" * 1_100_000 + ",safe\n").encode())
    error, hint = refused(base, path, capsys)
    assert error == (
        f"error: {path}, row 3, column 'text': a field is larger than 1,000,000 characters "
        "(prompt texts are limited to 100,000)"
    )
    assert "quot" not in error.split(": ", 2)[2] + hint


def test_huge_field_from_an_unclosed_quote_still_blames_the_quote(base, tmp_path, capsys):
    path = tmp_path / "open.csv"
    path.write_bytes(('text,label\nFine,safe\n"' + "y, more words\n" * 80_000).encode())
    error, _ = refused(base, path, capsys)
    assert error == f"error: {path}, row 3, column 'text': the file ends inside a quoted field (a quote is never closed)"


def test_symlink_loop_is_not_called_missing(base, tmp_path, capsys):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.symlink_to(b)
    b.symlink_to(a)
    error, hint = refused(base, a, capsys)
    assert error == f"error: {a}: is a loop of symbolic links"
    assert hint == "hint: give the file itself, not the link"


def test_directory_gets_error_and_hint(base, tmp_path, capsys):
    d = tmp_path / "adir"
    d.mkdir()
    error, hint = refused(base, d, capsys)
    assert error == f"error: {d}: is a directory, not a file"
    assert hint == "hint: give a file (for example one inside that directory)"


def test_missing_file_gets_error_and_hint(base, tmp_path, capsys):
    error, hint = refused(base, tmp_path / "nope.csv", capsys)
    assert error == f"error: {tmp_path / 'nope.csv'}: no such file"
    assert hint == "hint: check the path (a relative path starts from the current directory)"


def test_unreadable_path_gets_error_and_hint(base, capsys):
    # Readable by name, but reading it fails (as root, permission bits would not stop us).
    error, hint = refused(base, Path("/proc/self/mem"), capsys)
    assert error == "error: /proc/self/mem: cannot read: Input/output error"
    assert hint == "hint: check that the file is readable"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permission bits")
def test_permission_denied_gets_error_and_hint(base, tmp_path, capsys):
    path = tmp_path / "secret.csv"
    path.write_text(BASE_CSV, encoding="utf-8")
    path.chmod(0)
    error, _ = refused(base, path, capsys)
    assert error == f"error: {path}: permission denied"


HOSTILE = "evil\x1b[31m\u202e\u200f\u2028\u2029name"
HOSTILE_INERT = "evil\\x1b[31m\\u202e\\u200f\\u2028\\u2029name"


def test_dataset_name_and_file_name_are_printed_inert(base, tmp_path, capsys):
    path = tmp_path / f"{HOSTILE}.csv"
    path.write_text("text,label\nHow do I water tomatoes?,safe\n", encoding="utf-8")
    assert run(cli, [*base, "import", str(path)]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith(f"{HOSTILE_INERT} (generic, 1 rows): 1 added")
    assert run(cli, [*base, "import", str(path), "--dataset", "x\x1b]0;title\x07y"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("x\\x1b]0;title\\x07y (generic, 1 rows): 0 added")
    bad = tmp_path / f"{HOSTILE}-bad.csv"
    bad.write_text("text,label\nWords,perhaps\n", encoding="utf-8")
    assert run(cli, [*base, "import", str(bad)]) == 1
    _, err = capsys.readouterr()
    assert err.startswith(f"error: {tmp_path}/{HOSTILE_INERT}-bad.csv, row 2, column 'label': unknown label")
    for ch in "\x1b\u202e\u200f\u2028\u2029":
        assert ch not in out + err


def test_inert_neutralises_bidi_marks_and_line_separators():
    for ch in "\u061c\u200e\u200f\u202a\u202e\u2066\u2069\u2028\u2029\x85\x1b\x00":
        assert inert(f"a{ch}b") == f"a\\{'x' if ord(ch) < 0x100 else 'u'}{ord(ch):0{2 if ord(ch) < 0x100 else 4}x}b"
    assert inert("plain words, ünïcode and 中文 stay") == "plain words, ünïcode and 中文 stay"
    assert inert("two\nlines") == "two\\nlines" and inert("two\nlines", keep_newlines=True) == "two\nlines"


# -- the same file imported twice at once ----------------------------------------------------
def _tstore(*args: str) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "tstore"
    env = dict(os.environ, TSTORE_NO_PROGRESS="1")
    return subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.subprocess
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_same_file_imported_twice_at_once(backend, tmp_path, request):
    db_url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    options = ["--store", str(tmp_path / "store")] + (["--db-url", db_url] if db_url else [])
    init_store(tmp_path / "store", db_url=db_url).close()
    path = tmp_path / "many.csv"
    # 10,000 rows: long enough that the two starts overlap the imports (a process starts in about a second)
    path.write_text("text,label\n" + "\n".join(_good_rows(10_000)) + "\n", encoding="utf-8")
    started = time.monotonic()
    procs = [_tstore(*options, "import", str(path)) for _ in range(2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    assert time.monotonic() - started < 300
    for code, out, err in results:
        assert code == 0 and "Traceback" not in err and "IntegrityError" not in err, err
    outs = sorted(out for _, out, _ in results)
    assert outs[0].startswith("many (generic, 10000 rows): 10000 added, 0 updated")
    assert outs[1].startswith("many: unchanged (10000 rows, same file as the last import; nothing written)")
    # The store holds exactly what one import would have written.
    single = ["--store", str(tmp_path / "single")]
    init_store(tmp_path / "single").close()
    assert run(cli, [*single, "import", str(path)]) == 0
    assert exported(options) == exported(single)


# -- an import meets another writer ---------------------------------------------------------------
class _OtherWriter:
    """Another process's write transaction on the store: SQLite's write lock, or on PostgreSQL
    the import lock (the advisory lock every import takes)."""

    def __init__(self, options: list[str]):
        from taxonomy_store.transfer.import_lock import IMPORT_LOCK_KEY

        if len(options) > 2:
            import psycopg

            self.conn = psycopg.connect(options[3].replace("postgresql+psycopg://", "postgresql://", 1))
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (IMPORT_LOCK_KEY,))
        else:
            import sqlite3

            self.conn = sqlite3.connect(Path(options[1]) / "tstore.db", isolation_level=None, check_same_thread=False)
            self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def test_import_waits_for_another_writer_then_runs(base, tmp_path, capsys):
    import threading

    path = tmp_path / "later.csv"
    path.write_text("text,label\nHow do I repot a fern?,safe\n", encoding="utf-8")
    writer = _OtherWriter(base)
    timer = threading.Timer(1.5, writer.release)
    timer.start()
    started = time.monotonic()
    try:
        code = run(cli, [*base, "import", str(path)])
    finally:
        timer.join()
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith("later (generic, 1 rows): 1 added"), err
    assert err == "waiting for another import of this store to finish...\n"
    assert time.monotonic() - started >= 1.4  # it waited for the other writer


def test_import_gives_up_on_a_writer_that_does_not_finish(base, tmp_path, capsys, monkeypatch):
    from taxonomy_store.transfer import import_lock
    from taxonomy_store.db import engine

    monkeypatch.setattr(import_lock, "IMPORT_WAIT_SECONDS", 0.5)
    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_MS", 200)
    path = tmp_path / "blocked.csv"
    path.write_text("text,label\nHow do I repot a fern?,safe\n", encoding="utf-8")
    before = exported(base)
    writer = _OtherWriter(base)
    try:
        code = run(cli, [*base, "import", str(path)])
    finally:
        writer.release()
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.splitlines() == [
        "waiting for another import of this store to finish...",
        "error: another process has held the store's write lock for over 0.5s (an import still running?)",
        "hint: wait for it to finish, then run the import again",
    ]
    assert exported(base) == before
