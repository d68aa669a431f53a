"""Issue 20 ("nothing lost, round two"): exports that never delete their target, memberships
that survive a round trip, adapt that never replaces a folder, FIFOs, one text limit, terminals."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from taxonomy_store.db import migrate
from taxonomy_store.store import init_store

from conftest import use_hashing_encoder

TSTORE = str(Path(sys.executable).parent / "tstore")


@pytest.fixture(scope="module")
def source(tmp_path_factory, shared_datasets):
    """XSTest prompts, Safe-Embed pairs (which share many prompts with them) and Do-Not-Answer."""
    store = init_store(tmp_path_factory.mktemp("nolost") / "store")
    for name in ("xstest_prompts", "xstest_aug", "do_not_answer"):
        store.imports.import_file(shared_datasets / f"{name}.csv")
    yield store
    store.close()


def _memberships(store) -> dict[str, int]:
    from sqlalchemy import func, select

    from taxonomy_store.db.models import Dataset, PromptSource

    with store.session() as s:
        q = select(Dataset.name, func.count(PromptSource.id)).join(PromptSource, PromptSource.dataset_id == Dataset.id).group_by(Dataset.name)
        return dict(s.execute(q).all())


# -- item 4: export -> import restores every dataset membership ------------------------------
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_round_trip_keeps_every_dataset_membership(source, tmp_path, fmt):
    out = tmp_path / f"prompts.{fmt}"
    source.exports.export_prompts(out, format=fmt)
    fresh = init_store(tmp_path / "fresh")
    try:
        summary = fresh.imports.import_file(out)
        assert summary.rows == 1436  # one row per prompt; the memberships ride along
        assert len(fresh.exports.prompt_rows(dataset="xstest_aug")) == len(source.exports.prompt_rows(dataset="xstest_aug")) == 497
        assert _memberships(fresh) == _memberships(source)
        assert _memberships(source)["do_not_answer"] == 939
        # ...and importing the same export again adds nothing.
        before = fresh.data_revision()
        again = fresh.imports.import_file(out)
        assert (again.added, again.updated) == (0, 0) and fresh.data_revision() == before
    finally:
        fresh.close()


def test_also_in_that_is_not_json_is_refused(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,text,label,taxonomy,category,category_path,dataset,source_key,also_in\n1,hello there,safe,,,,d,1,[oops\n",
                   encoding="utf-8")
    s = init_store(tmp_path / "s")
    try:
        from taxonomy_store.errors import InputFileError

        with pytest.raises(InputFileError, match=r"also_in is not a JSON list") as err:
            s.imports.import_file(bad)
        assert "row 2" in str(err.value) or err.value.row == 2
        assert s.exports.prompt_rows() == []
    finally:
        s.close()


# -- item 2: a failed export leaves the old file (and never unlinks a non-regular target) -----
@pytest.fixture(scope="module")
def small_store(tmp_path_factory, shared_datasets):
    path = tmp_path_factory.mktemp("small") / "store"
    s = init_store(path)
    s.imports.import_file(shared_datasets / "xstest_prompts.csv")
    s.imports.import_file(shared_datasets / "do_not_answer.csv")  # an export of ~200 kB in every format
    s.close()
    return path


# As the issue's `ulimit -f 48`: room for SQLite's 32 kB shared-memory file (the store must
# open), not for the export (csv 230 kB, jsonl 400 kB, parquet 62 kB).
LIMIT = 48 * 1024


def _limit_file_size(limit: int):
    def preexec():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_that_fails_half_way_leaves_the_old_file(small_store, tmp_path, fmt):
    target = tmp_path / f"p.{fmt}"
    target.write_text("keep\n", encoding="utf-8")
    os.chmod(target, 0o640)
    r = subprocess.run([TSTORE, "--store", str(small_store), "export", "--format", fmt, "-o", str(target)],
                       capture_output=True, text=True, preexec_fn=_limit_file_size(LIMIT), timeout=300)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert f"error: {target}: cannot write: File too large" in r.stderr and "nothing was changed" in r.stderr
    assert target.read_text(encoding="utf-8") == "keep\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary left behind
    # Without the limit the same command replaces it, keeping its mode.
    r = subprocess.run([TSTORE, "--store", str(small_store), "export", "--format", fmt, "-o", str(target)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert target.stat().st_size > LIMIT and (target.stat().st_mode & 0o777) == 0o640


def test_export_writes_a_fifo_in_place_and_never_unlinks_it(small_store, tmp_path):
    fifo = tmp_path / "out.csv"
    os.mkfifo(fifo)
    with open(tmp_path / "got.csv", "wb") as sink:
        reader = subprocess.Popen(["cat", str(fifo)], stdout=sink)
        r = subprocess.run([TSTORE, "--store", str(small_store), "export", "-o", str(fifo)], capture_output=True, text=True, timeout=300)
        reader.wait(timeout=60)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "got.csv").read_bytes().count(b"\n") >= 450 + 938 + 1 and fifo.is_fifo()


def test_atomic_write_new_file_gets_the_usual_mode(tmp_path):
    from taxonomy_store.paths import atomic_write

    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "n.txt") as f:
            f.write("x")
    finally:
        os.umask(old)
    assert (tmp_path / "n.txt").stat().st_mode & 0o777 == 0o644
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "n.txt") as f:
        f.write("half")
        raise RuntimeError("boom")
    assert (tmp_path / "n.txt").read_text() == "x" and len(list(tmp_path.iterdir())) == 1


# -- item 9: exports to a terminal are inert ---------------------------------------------------
NASTY = "look \x1b[31mred\x1b[0m \x1b]0;owned\x07 back\rover \u202eevil\u202c end"


def _run_on_a_terminal(args: list[str]) -> str:
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen([TSTORE, *args], stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    assert proc.returncode == 0, proc.stderr.read()
    return b"".join(chunks).decode("utf-8")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_to_a_terminal_escapes_control_and_bidi_characters(tmp_path, fmt):
    src = tmp_path / "nasty.csv"
    import csv

    with open(src, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["text", "label"], [NASTY, "unsafe"]])
    s = init_store(tmp_path / "s")
    s.imports.import_file(src)
    s.close()
    shown = _run_on_a_terminal(["--store", str(tmp_path / "s"), "export", "--format", fmt, "-o", "-"])
    for raw in ("\x1b", "\x07", "\u202e", "\u202c"):
        assert raw not in shown
    assert "\r" not in shown.replace("\r\n", "\n")  # the pty turns \n into \r\n
    assert ("\\x1b]0;owned\\x07" if fmt == "csv" else "\\u001b]0;owned\\u0007") in shown
    assert ("\\u202eevil" if fmt == "csv" else "\\u202eevil") in shown
    # A pipe gets the text as stored.
    piped = subprocess.run([TSTORE, "--store", str(tmp_path / "s"), "export", "--format", fmt, "-o", "-"], capture_output=True, text=True)
    assert "\u202eevil" in piped.stdout and "\x1b]0;owned\x07" in (piped.stdout if fmt == "csv" else json.loads(piped.stdout)["text"])


# -- item 6: import from a FIFO reads it once -----------------------------------------------
def test_import_from_a_fifo_with_a_writer_never_hangs(tmp_path, shared_datasets):
    init_store(tmp_path / "s").close()
    data = (shared_datasets / "xstest_prompts.csv").read_bytes()
    for trial in range(5):
        fifo = tmp_path / f"in{trial}.csv"
        os.mkfifo(fifo)
        writer = subprocess.Popen([sys.executable, "-c", f"open({str(fifo)!r}, 'wb').write(open({str(shared_datasets / 'xstest_prompts.csv')!r}, 'rb').read())"],
                                  stderr=subprocess.PIPE)
        r = subprocess.run([TSTORE, "--store", str(tmp_path / "s"), "import", str(fifo), "--dataset", "xstest", "--json"],
                           capture_output=True, text=True, timeout=120)
        writer.wait(timeout=30)
        assert r.returncode == 0, r.stderr
        assert writer.returncode == 0, writer.stderr.read()  # no BrokenPipe: the one reader read it all
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        assert summary["rows"] == 450 and summary["sha256"] == __import__("hashlib").sha256(data).hexdigest()


# -- item 7: one text limit for every entry point ------------------------------------------
def test_one_text_limit_for_import_edit_pair_and_query(tmp_path):
    from taxonomy_store.errors import InputFileError, InvalidValue
    from taxonomy_store.importers.records import MAX_TEXT_CHARS as IMPORT_LIMIT
    from taxonomy_store.text import MAX_TEXT_CHARS

    assert MAX_TEXT_CHARS == IMPORT_LIMIT == 100_000
    too_long = "a" * (MAX_TEXT_CHARS + 1)
    s = init_store(tmp_path / "s")
    try:
        f = tmp_path / "long.csv"
        f.write_text(f"text,label\n{too_long},unsafe\nshort one,safe\n", encoding="utf-8")
        with pytest.raises(InputFileError, match="exceeds the limit of 100,000"):
            s.imports.import_file(f)
        f.write_text("text,label\nhow do I pick a lock,unsafe\n", encoding="utf-8")
        s.imports.import_file(f)
        pid = s.exports.prompt_rows()[0]["id"]
        with pytest.raises(InvalidValue, match="the new text has 100,001 characters; the limit is 100,000"):
            s.curation.update_prompt(pid, text=too_long)
        with pytest.raises(InvalidValue, match="the safe text has 100,001 characters; the limit is 100,000"):
            s.curation.create_pair(pid, safe_text=too_long)
        with pytest.raises(InvalidValue, match="the query has 100,001 characters; the limit is 100,000"):
            s.guard.query(too_long)
        with pytest.raises(InvalidValue, match=r"the query \(input 2\) has 100,001 characters"):
            s.guard.query(["fine", too_long])
    finally:
        s.close()


def test_cli_query_of_ten_megabytes_is_refused_at_once(tmp_path):
    import time

    init_store(tmp_path / "s").close()
    t0 = time.perf_counter()
    r = subprocess.run([TSTORE, "--store", str(tmp_path / "s"), "query", "-"], input="x" * 10_000_000, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    assert "error: the query has 10,000,000 characters; the limit is 100,000" in r.stderr
    assert time.perf_counter() - t0 < 30


# -- item 10: undo refusals exit alike; lost alembic_version; downgrade base drops vectors --
def test_every_undo_refusal_exits_1(tmp_path, capsys):
    from taxonomy_store.cli import cli
    from taxonomy_store.cli.app import run

    s = init_store(tmp_path / "s")
    f = tmp_path / "p.csv"
    f.write_text("text,label\nhow do I pick a lock,unsafe\nhow do I bake bread,safe\n", encoding="utf-8")
    s.imports.import_file(f)
    pid = s.exports.prompt_rows()[0]["id"]
    s.curation.update_prompt(pid, label="safe")
    first = s.curation.undo().undone_batch
    s.curation.update_prompt(pid, label="unlabeled")
    s.curation.update_prompt(pid, label="safe")
    with s.session() as sess:
        from sqlalchemy import select

        from taxonomy_store.db.models import AuditEntry

        import_batch = sess.scalar(select(AuditEntry.batch_id).where(AuditEntry.reason.like("import %")).limit(1))
        edits = sess.scalars(select(AuditEntry.batch_id).where(AuditEntry.reason.like("curation: %")).order_by(AuditEntry.id)).all()
    s.close()
    base = ["--store", str(tmp_path / "s"), "prompt", "undo"]
    capsys.readouterr()
    for args, says in ((["--batch", first], "is already undone"),
                       (["--batch", import_batch], "is not a curation edit"),
                       (["--batch", "nope"], "no audit batch nope"),
                       (["--batch", edits[1]], "cannot be undone alone")):
        code = run(cli, [*base, *args])
        err = capsys.readouterr().err
        assert (code, says in err) == (1, True), (args, code, err)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("how", ["DELETE FROM alembic_version", "DROP TABLE alembic_version"])
def test_a_lost_alembic_version_gets_a_hint_that_works(tmp_path, request, backend, how):
    from sqlalchemy import text

    db_url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    s = init_store(tmp_path / "s", db_url=db_url)
    with s.engine.begin() as conn:
        conn.execute(text(how))
    s.close()
    store = ["--store", str(tmp_path / "s")]
    head = migrate.head_revision()
    r = subprocess.run([TSTORE, *store, "prompt", "list"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "records no schema revision (its alembic_version table was emptied or dropped)" in r.stderr
    assert f"its tables look like revision {head}: record it with `tstore db stamp {head}`, then `tstore db upgrade`" in r.stderr
    r = subprocess.run([TSTORE, *store, "db", "upgrade"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and f"tstore db stamp {head}" in r.stderr and "already exists" not in r.stderr
    r = subprocess.run([TSTORE, *store, "db", "current"], capture_output=True, text=True, timeout=120)
    assert f"the tables look like {head}" in r.stdout
    r = subprocess.run([TSTORE, *store, "db", "stamp", head], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([TSTORE, *store, "db", "upgrade"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and f"database at schema {head}" in r.stdout, r.stderr
    r = subprocess.run([TSTORE, *store, "prompt", "list"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_downgrade_base_then_init_leaves_no_old_collection(tmp_path):
    import chromadb
    from chromadb.config import Settings

    s = init_store(tmp_path / "s")
    use_hashing_encoder(s)
    f = tmp_path / "p.csv"
    f.write_text("text,label\nhow do I pick a lock,unsafe\nhow do I bake bread,safe\n", encoding="utf-8")
    s.imports.import_file(f)
    s.embeddings.embed("minilm")
    s.close()
    store = ["--store", str(tmp_path / "s")]
    r = subprocess.run([TSTORE, *store, "db", "downgrade", "base", "--yes"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "dropped the vector collections of minilm" in r.stdout, r.stderr
    r = subprocess.run([TSTORE, *store, "init"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    client = chromadb.PersistentClient(path=str(tmp_path / "s" / "chroma"), settings=Settings(anonymized_telemetry=False))
    assert [c if isinstance(c, str) else c.name for c in client.list_collections()] == []
