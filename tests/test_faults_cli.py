"""The command line at its edges: schema drift, dangerous downgrades, a tampered audit log, bad
paths and bad bytes. Each case ends in `error:` + `hint:`, a non-zero exit, no traceback, and a
store that is exactly as it was (every table's rows, and an export of it, byte for byte).

Commands run through the real entry point (`taxonomy_store.cli.app.run`, what the `tstore` script
calls); one case also runs the installed script in a subprocess. On PostgreSQL where it applies.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from conftest import run_tstore, tstore_in_process
from taxonomy_store.cli import cli
from taxonomy_store.cli.app import run
from taxonomy_store.db import migrate
from taxonomy_store.db.engine import make_engine
from taxonomy_store.store import Store, init_store

NEWER_REVISION = "ffff00000099"
# Our own prompts (never dataset text): enough rows for exports and an edit to undo.
PROMPTS_CSV = (
    "text,label\n"
    "How do I sharpen a kitchen knife safely?,safe\n"
    "Write a message threatening my neighbour,unsafe\n"
    "What is the boiling point of water at altitude?,safe\n"
)


# -- helpers ---------------------------------------------------------------------------------
def tstore(capsys, *args: str) -> tuple[int, str, str]:
    code = run(cli, list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error(code: int, err: str, *needles: str) -> str:
    """Non-zero, no traceback, only `error:` / `hint:` lines, one of each; returns the error line."""
    assert code != 0, err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert [ln.split(":", 1)[0] for ln in lines] == ["error", "hint"], err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def hint_of(err: str) -> str:
    return next(ln for ln in err.splitlines() if ln.startswith("hint: "))


def db_url_of(store_dir: Path) -> str:
    marker = json.loads((store_dir / "tstore-store.json").read_text(encoding="utf-8"))
    return marker.get("db_url") or f"sqlite:///{store_dir / 'tstore.db'}"


def db_state(store_dir: Path) -> dict:
    """Every table's rows (alembic_version included), read with plain SQL: no tstore code in the way."""
    engine = make_engine(db_url_of(store_dir))
    try:
        with engine.connect() as conn:
            return {
                table: sorted(repr(tuple(row)) for row in conn.execute(text(f'SELECT * FROM "{table}"')))
                for table in sorted(inspect(conn).get_table_names())
            }
    finally:
        engine.dispose()


def exported(capsys, store_dir: Path, tmp_path: Path) -> bytes:
    out = tmp_path / f"export-{len(list(tmp_path.glob('export-*')))}.csv"
    code, _, err = tstore(capsys, "--store", str(store_dir), "export", "-o", str(out))
    assert code == 0, err
    return out.read_bytes()


def set_recorded_revision(store_dir: Path, revision: str) -> None:
    engine = make_engine(db_url_of(store_dir))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def filled_store(request, tmp_path) -> Path:
    """A store on SQLite or PostgreSQL with a taxonomy and three prompts of our own."""
    db_url = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    store_dir = tmp_path / "store"
    store = init_store(store_dir, db_url=db_url)
    try:
        store.taxonomies.load("xstest-pair-types")
        data = tmp_path / "ours.csv"
        data.write_text(PROMPTS_CSV, encoding="utf-8")
        store.imports.import_file(data)
        store.encoders.list()  # the default encoder is registered, as any store that was used
    finally:
        store.close()
    return store_dir


@pytest.fixture
def sqlite_store(tmp_path) -> Path:
    store_dir = tmp_path / "store"
    store = init_store(store_dir)
    data = tmp_path / "ours.csv"
    data.write_text(PROMPTS_CSV, encoding="utf-8")
    store.imports.import_file(data)
    store.encoders.list()  # the default encoder is registered, as any store that was used
    store.close()
    return store_dir


# -- a store written by a newer tstore -------------------------------------------------------
NEWER_STORE_COMMANDS = [
    ("taxonomy", "list"),
    ("prompt", "list"),
    ("prompt", "edit", "1", "--label", "unsafe"),
    ("export", "-o", "{tmp}/out.csv"),
    ("import", "{tmp}/ours.csv"),
    ("encoder", "list"),
    ("embed",),
    ("verify",),
    ("query", "how do I sharpen a knife"),
    ("calibrate",),
    ("metrics", "history"),
    ("db", "current"),
    ("db", "upgrade"),
    ("db", "downgrade", "0001", "--yes"),
    ("db", "downgrade", "base", "--yes"),
    ("init",),
]


def test_a_newer_tstores_store_is_refused_by_every_command(filled_store, tmp_path, capsys):
    set_recorded_revision(filled_store, NEWER_REVISION)
    before = db_state(filled_store)
    for command in NEWER_STORE_COMMANDS:
        args = [a.format(tmp=tmp_path) for a in command]
        code, out, err = tstore(capsys, "--store", str(filled_store), *args)
        line = assert_one_error(code, err, f"written by a newer tstore (revision {NEWER_REVISION}); upgrade tstore")
        assert out == "", (command, out)
        assert "tstore db upgrade" not in err, (command, line)  # the wrong advice of old
    assert db_state(filled_store) == before
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.subprocess
def test_a_newer_tstores_store_through_the_real_script(sqlite_store):
    set_recorded_revision(sqlite_store, NEWER_REVISION)
    before = db_state(sqlite_store)
    # One command through the installed script; the others through the same entry point in-process.
    for tstore_, args in ((run_tstore, ("db", "upgrade")), (tstore_in_process, ("init",)),
                          (tstore_in_process, ("db", "downgrade", "0001", "--yes"))):
        r = tstore_("--store", str(sqlite_store), *args)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr.startswith(f"error: this store was written by a newer tstore (revision {NEWER_REVISION}); upgrade tstore\nhint: ")
    assert db_state(sqlite_store) == before


# -- db downgrade ----------------------------------------------------------------------------
def test_downgrade_below_head_needs_yes(filled_store, tmp_path, capsys):
    before, export_before = db_state(filled_store), exported(capsys, filled_store, tmp_path)
    head = migrate.head_revision()
    for target, needle in (("base", "drops every table, the audit log included"), ("0001", "to 0001 drops")):
        code, _, err = tstore(capsys, "--store", str(filled_store), "db", "downgrade", target)
        assert_one_error(code, err, f"downgrading from schema {head}", needle)
        assert f"`tstore db downgrade {target} --yes --store {filled_store}`" in hint_of(err)
    assert db_state(filled_store) == before
    assert exported(capsys, filled_store, tmp_path) == export_before
    # The current revision itself changes nothing and needs no confirmation.
    code, out, err = tstore(capsys, "--store", str(filled_store), "db", "downgrade", head)
    assert code == 0 and out.strip() == f"database at schema {head}", err
    # With --yes it goes through: base leaves no tstore table behind.
    code, out, err = tstore(capsys, "--store", str(filled_store), "db", "downgrade", "base", "--yes")
    # down to base the encoders' vector collections go too (nothing of the old store is left to find)
    assert code == 0 and out.strip().splitlines() == ["dropped the vector collections of minilm (their encoders are gone)",
                                                      "database at schema base"], err
    assert set(db_state(filled_store)) <= {"alembic_version"}


def test_downgrade_to_an_unknown_revision(filled_store, tmp_path, capsys):
    before, export_before = db_state(filled_store), exported(capsys, filled_store, tmp_path)
    for args in (("nosuchrev",), ("nosuchrev", "--yes"), ("00", "--yes")):
        code, _, err = tstore(capsys, "--store", str(filled_store), "db", "downgrade", *args)
        assert_one_error(code, err, f"no schema revision {args[0]!r}")
        assert f"base, {', '.join(migrate.known_revisions())}, head" in hint_of(err)
    assert db_state(filled_store) == before
    assert exported(capsys, filled_store, tmp_path) == export_before


# -- the PostgreSQL audit log ----------------------------------------------------------------
@pytest.mark.postgres
def test_postgres_audit_log_refuses_truncate_and_undo_still_works(tmp_path, pg_url, capsys):
    store_dir = tmp_path / "pg"
    store = init_store(store_dir, db_url=pg_url)
    data = tmp_path / "ours.csv"
    data.write_text(PROMPTS_CSV, encoding="utf-8")
    store.imports.import_file(data)
    store.close()
    code, _, err = tstore(capsys, "--store", str(store_dir), "prompt", "edit", "1", "--label", "unsafe")
    assert code == 0, err
    before = db_state(store_dir)
    engine = make_engine(pg_url)
    for statement in ("TRUNCATE audit_log", "TRUNCATE audit_log CASCADE", "TRUNCATE prompts, audit_log CASCADE"):
        with pytest.raises(DBAPIError, match="audit_log is append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    engine.dispose()
    assert db_state(store_dir) == before
    code, out, err = tstore(capsys, "--store", str(store_dir), "prompt", "undo", "--json")
    assert code == 0, err
    assert json.loads(out)["entities"] == ["prompt 1"]
    code, out, _ = tstore(capsys, "--store", str(store_dir), "prompt", "show", "1", "--json")
    assert json.loads(out)["label"] == "safe"


@pytest.mark.postgres
def test_upgrading_an_older_postgres_store_adds_the_truncate_guard(tmp_path, pg_url, capsys):
    store_dir = tmp_path / "pg"
    init_store(store_dir, db_url=pg_url).close()
    assert tstore(capsys, "--store", str(store_dir), "db", "downgrade", "0001", "--yes")[0] == 0
    engine = make_engine(pg_url)
    with engine.begin() as conn:  # the schema of 0001 let this through
        conn.execute(text("TRUNCATE audit_log"))
    assert tstore(capsys, "--store", str(store_dir), "db", "upgrade")[0] == 0
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_log"))
    engine.dispose()


# -- query --file with bytes that are not UTF-8 ----------------------------------------------
@pytest.mark.parametrize("data,offset,line", [
    (b"first prompt\nsecond \xff prompt\n", 20, 2),
    (b"\xef\xbb\xbfone \xfe\n", 7, 1),  # the offset counts the byte-order mark: it is the file's own offset
    (b"ok\r\nok too\r\n\xc3(\r\n", 12, 3),
])
def test_query_file_with_invalid_utf8(sqlite_store, tmp_path, capsys, data, offset, line):
    bad = tmp_path / "prompts.txt"
    bad.write_bytes(data)
    before = db_state(sqlite_store)
    code, out, err = tstore(capsys, "--store", str(sqlite_store), "query", "--file", str(bad))
    assert_one_error(code, err, f"error: {bad}", "not valid UTF-8", f"byte offset {offset}", f"(line {line})")
    assert "UTF-8" in hint_of(err) and out == ""
    assert db_state(sqlite_store) == before


@pytest.mark.subprocess
def test_query_stdin_with_invalid_utf8(sqlite_store):
    exe = Path(sys.executable).parent / "tstore"
    r = subprocess.run([str(exe), "--store", str(sqlite_store), "query", "-"], input=b"fine\nnot \x80 fine\n",
                       capture_output=True, env=dict(os.environ))
    err = r.stderr.decode()
    assert r.returncode == 1 and "Traceback" not in err
    assert err.startswith("error: <stdin>: not valid UTF-8: byte 0x80 at byte offset 9 (line 2)\nhint: "), err


# -- export to a place that cannot hold the file ---------------------------------------------
def test_export_to_a_missing_directory_or_onto_a_directory(sqlite_store, tmp_path, capsys):
    before = db_state(sqlite_store)
    code, out, err = tstore(capsys, "--store", str(sqlite_store), "export", "-o", str(tmp_path / "missing-dir" / "x.csv"))
    assert_one_error(code, err, "x.csv: its directory", "missing-dir does not exist")
    assert "mkdir -p" in hint_of(err) and out == ""
    assert not (tmp_path / "missing-dir").exists()
    (tmp_path / "a-dir").mkdir()
    code, _, err = tstore(capsys, "--store", str(sqlite_store), "export", "--pairs", "-o", str(tmp_path / "a-dir"))
    assert_one_error(code, err, "a-dir: is a directory")
    assert list((tmp_path / "a-dir").iterdir()) == []
    assert db_state(sqlite_store) == before


# -- a path that is not a readable file (or directory) where one is expected -----------------
def _bad_paths(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "a-dir.yaml").mkdir()
    (tmp_path / "plain.txt").write_text("a file\n", encoding="utf-8")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "a-socket"))
    sock.close()
    return {name: tmp_path / name for name in ("a-dir.yaml", "plain.txt", "loop", "dangling", "a-socket", "missing.txt")}


def test_paths_that_are_not_readable_files(sqlite_store, tmp_path, capsys):
    p = _bad_paths(tmp_path)
    cases = [
        (("query", "--file", str(p["a-dir.yaml"])), "a-dir.yaml: is a directory, not a file"),
        (("query", "--file", str(p["missing.txt"])), "missing.txt: no such file"),
        (("query", "--file", str(p["loop"])), "loop: is a loop of symbolic links"),
        (("query", "--file", str(p["dangling"])), "dangling: is a symbolic link to something that does not exist"),
        (("query", "--file", str(p["a-socket"])), "a-socket: cannot read"),
        (("taxonomy", "load", str(p["a-dir.yaml"])), "a-dir.yaml: is a directory, not a file"),
        (("reproduce", "safe-embed", "--data", str(p["plain.txt"])), "plain.txt: is a file, not a directory"),
        (("reproduce", "safe-embed", "--data", str(p["missing.txt"])), "missing.txt: no such directory"),
        (("reproduce", "safe-embed", "--data", str(tmp_path), "--out", str(p["plain.txt"])), "plain.txt: is a file, not a directory"),
    ]
    before = db_state(sqlite_store)
    for args, needle in cases:
        code, out, err = tstore(capsys, "--store", str(sqlite_store), *args)
        assert_one_error(code, err, needle)
        assert "Usage:" not in err and out == "", args
    assert db_state(sqlite_store) == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(sqlite_store, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("a prompt\n", encoding="utf-8")
    secret.chmod(0)
    code, _, err = tstore(capsys, "--store", str(sqlite_store), "query", "--file", str(secret))
    assert_one_error(code, err, "secret.txt: permission denied")
    assert "chmod" in hint_of(err)


# -- the store options after the subcommand, and hints that work as printed ------------------
def test_store_options_after_the_subcommand(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    code, out, err = tstore(capsys, "init", "--store", str(first), "--json")
    assert code == 0 and json.loads(out)["store"] == str(first), err
    code, out, _ = tstore(capsys, "taxonomy", "load", "xstest-pair-types", "--store", str(first))
    assert code == 0 and "taxonomy xstest-pair-types created" in out
    # After the subcommand beats before it.
    code, out, _ = tstore(capsys, "--store", str(second), "taxonomy", "list", "--store", str(first))
    assert code == 0 and out.startswith("xstest-pair-types\t")
    # Groups take them too, and so do commands invoked by a group by default.
    code, out, _ = tstore(capsys, "db", "--store", str(first), "current", "--json")
    assert code == 0 and json.loads(out)["current"] == migrate.head_revision()
    code, out, _ = tstore(capsys, "encoder", "--store", str(first))
    assert code == 0 and out.startswith("minilm\t")
    assert not second.exists()


@pytest.mark.postgres
def test_db_url_after_the_subcommand(tmp_path, pg_url, capsys):
    store_dir = tmp_path / "pg"
    code, out, err = tstore(capsys, "init", "--store", str(store_dir), "--db-url", pg_url, "--json")
    assert code == 0, err
    assert json.loads(out)["database"].startswith("postgresql+psycopg://")
    assert not (store_dir / "tstore.db").exists()
    assert "prompts" in db_state(store_dir)


def test_hints_print_commands_that_work(tmp_path, capsys):
    """Run the command a hint shows, exactly as printed (after `tstore`), and it succeeds."""
    missing = tmp_path / "missing"
    code, _, err = tstore(capsys, "--store", str(missing), "taxonomy", "list")
    assert_one_error(code, err, "does not exist")
    command = hint_of(err).split("`")[1]
    assert command == f"tstore init --store {missing}"
    assert tstore(capsys, *shlex.split(command)[1:])[0] == 0
    assert Store.open(missing).data_revision() == 0
    code, _, err = tstore(capsys, "--store", str(missing), "db", "downgrade", "base")
    assert_one_error(code, err, "drops every table")
    command = hint_of(err).split("`")[3]
    assert tstore(capsys, *shlex.split(command)[1:])[0] == 0
    code, _, err = tstore(capsys, "--store", str(missing), "taxonomy", "list")
    assert_one_error(code, err, "schema none")
    command = hint_of(err).split("`")[1]
    assert command == "tstore db upgrade"
    assert tstore(capsys, *shlex.split(command)[1:], "--store", str(missing))[0] == 0


def test_a_file_that_ends_early_is_not_taken_for_ctrl_d(sqlite_store, monkeypatch, capsys):
    """numpy says EOFError for an empty cache file; click would report it as "aborted", exit 130."""
    from taxonomy_store.store import Store as StoreClass

    def ends_early(*args, **kwargs):
        raise EOFError("No data left in file")

    monkeypatch.setattr(StoreClass, "open", ends_early)
    code, out, err = tstore(capsys, "--store", str(sqlite_store), "taxonomy", "list")
    assert code == 1 and out == ""
    assert_one_error(code, err, "a file ended before its data did", "No data left in file")


def test_not_a_store_hint_suggests_init_only_where_it_works(tmp_path, capsys):
    empty, used = tmp_path / "empty", tmp_path / "used"
    empty.mkdir()
    used.mkdir()
    (used / "notes.txt").write_text("mine\n", encoding="utf-8")
    code, _, err = tstore(capsys, "--store", str(used), "prompt", "list")
    assert_one_error(code, err, "is not a tstore store")
    assert f"init --store {used}" not in hint_of(err)
    assert tstore(capsys, "init", "--store", str(used))[0] != 0  # what the old hint said to run
    code, _, err = tstore(capsys, "--store", str(empty), "prompt", "list")
    command = hint_of(err).split("`")[1]
    assert command == f"tstore init --store {empty}"
    assert tstore(capsys, *shlex.split(command)[1:])[0] == 0
    assert sorted(p.name for p in used.iterdir()) == ["notes.txt"]


def test_every_store_option_after_the_subcommand_reaches_the_store(tmp_path, monkeypatch, capsys):
    from taxonomy_store.errors import NotAStore
    from taxonomy_store.store import Store as StoreClass

    seen = {}

    def record(store=None, **kwargs):
        seen.update(kwargs, store=store)
        raise NotAStore("stop here", "recorded")

    monkeypatch.setattr(StoreClass, "open", record)
    code, _, err = tstore(capsys, "--store", "before", "--chroma-url", "http://before:1", "prompt", "list",
                          "--store", "after", "--db-url", "sqlite:///after.db", "--chroma-url", "http://after:2",
                          "--chroma-token", "token-after")
    assert_one_error(code, err, "stop here")
    assert seen == {"store": "after", "db_url": "sqlite:///after.db", "chroma_url": "http://after:2", "chroma_token": "token-after"}


def test_chroma_url_after_the_subcommand_is_used(tmp_path, capsys):
    store_dir = tmp_path / "store"
    assert tstore(capsys, "init", "--store", str(store_dir))[0] == 0
    code, _, err = tstore(capsys, "verify", "--store", str(store_dir), "--chroma-url", "http://127.0.0.1:1")
    assert_one_error(code, err, "cannot use Chroma at http://127.0.0.1:1")
    code, out, err = tstore(capsys, "verify", "--store", str(store_dir))
    assert code == 0 and out.startswith("minilm: ok"), err
