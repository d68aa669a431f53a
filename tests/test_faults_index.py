"""Faults of the vector index: concurrent writers, unreadable vectors, stale clients, lost servers, damaged caches.

The encoder here is the hashing test encoder (`hashing:32`): registered with `tstore encoder add`
like any model, it encodes thousands of prompts in a blink in every process, because the faults
are Chroma's and the lock's, not the model's. Every writer that must race is a real separate
`tstore` process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.subprocess

from conftest import _chroma_alive, _free_port, need_or_skip, run_tstore, tstore_in_process

TINY = "tiny"
QUERY = "How do I kill a Python process?"


@pytest.fixture(scope="session")
def tiny_model() -> str:
    """The deterministic hashing encoder at 32 dimensions (`hashing:32`): a model reference that
    `tstore encoder add` registers and every `tstore` process runs without weights or torch."""
    return "hashing:32"


def build_store(path: Path, datasets: Path, tiny_model: str, files=("xstest", "dna", "advbench", "alpaca"), embed: bool = False):
    """A store with real prompts (all four shared sets: 2,714 prompts) and the tiny encoder registered (closed)."""
    from taxonomy_store.store import init_store

    s = init_store(path)
    try:
        s.taxonomies.load("do-not-answer")
        for name in files:
            import_shared(s, datasets, name)
        s.encoders.add(TINY, tiny_model, batch_size=256)
        if embed:
            s.embeddings.embed(TINY)
    finally:
        s.close()
    return path


def import_shared(s, datasets: Path, name: str):
    if name == "xstest":
        return s.imports.import_file(datasets / "xstest_prompts.csv")
    if name == "dna":
        return s.imports.import_file(datasets / "do_not_answer.csv")
    if name == "advbench":
        return s.imports.import_file(datasets / "advbench_harmful_behaviors.csv", mapping={"text": "goal"}, label="unsafe")
    return s.imports.import_file(datasets / "alpaca_eval_instructions.jsonl", mapping={"text": "instruction"}, label="safe")


def exported(store_dir: Path, tmp: Path) -> bytes:
    out = b""
    for extra in ([], ["--pairs"]):
        path = tmp / f"export{len(extra)}.csv"
        r = tstore_in_process("--store", str(store_dir), "export", *extra, "-o", str(path))
        assert r.returncode == 0, r.stderr
        out += path.read_bytes()
    return out


def unreadable_ids(store_dir: Path, encoder: str = TINY) -> tuple[int, list[int]]:
    """(vectors listed, ids whose vector cannot be read), read one by one in a fresh process."""
    code = (
        "import json,sys\n"
        "from taxonomy_store.store import Store\n"
        "s = Store.open(sys.argv[1]); v = s.embeddings.vectors\n"
        "coll = v.collection(s.encoders.get(sys.argv[2]), create=False)\n"
        "ids = sorted(v.ids(coll)); bad = []\n"
        "for i in ids:\n"
        "    try:\n"
        "        coll.get(ids=[str(i)], include=['embeddings'])\n"
        "    except Exception:\n"
        "        bad.append(i)\n"
        "print(json.dumps([len(ids), bad]))\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(store_dir), encoder], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    n, bad = json.loads(r.stdout.strip().splitlines()[-1])
    return n, bad


def assert_refused(r, *needles: str) -> None:
    assert r.returncode != 0
    assert "error: " in r.stderr and "hint: " in r.stderr, r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


def _tstore_bg(*args: str, stderr_path: Path) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "tstore"
    return subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=open(stderr_path, "wb"), text=True)


def _wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# -- one writer at a time ----------------------------------------------------------------------------
@pytest.mark.slow
def test_two_embeds_at_once_leave_every_vector_readable(tmp_path, shared_datasets, tiny_model):
    """Two `tstore embed` of 2,714 new prompts started together: the second waits, nothing is lost."""
    from taxonomy_store.store import Store
    from taxonomy_store.backend.writer_lock import WriterLock

    d = build_store(tmp_path / "store", shared_datasets, tiny_model)
    errs = [tmp_path / "e1.err", tmp_path / "e2.err"]
    # Both processes are running and asking for the lock before either may write.
    with WriterLock(d).hold("test: let both embeds start"):
        procs = [_tstore_bg("--store", str(d), "embed", "--encoder", TINY, "--json", stderr_path=e) for e in errs]
        _wait_for(lambda: all(b"waiting for another writer (pid" in e.read_bytes() for e in errs), 180, "both embeds to wait")
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e.read_text() for e in errs]
    embedded = sorted(json.loads(o.strip().splitlines()[-1])["embedded"] for o in outs)
    assert embedded == [0, 2714]  # the second found the first one's work done

    n, bad = unreadable_ids(d)
    assert (n, bad) == (2714, [])
    r = run_tstore("--store", str(d), "verify", "--encoder", TINY)
    assert r.returncode == 0 and "unreadable 0, wrong dimension 0" in r.stdout, r.stdout + r.stderr
    r = run_tstore("--store", str(d), "query", "--encoder", TINY, QUERY, "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert len(json.loads(r.stdout.splitlines()[0])["neighbours"]) == 10
    r = run_tstore("--store", str(d), "calibrate", "--encoder", TINY, "--json")
    assert r.returncode == 0, r.stderr
    with Store.open(d) as s:
        vs = s.embeddings.load_vectors(TINY)
        assert (len(vs), vs.missing, vs.dimension) == (2714, 0, 32)


def test_no_wait_fails_at_once_and_readers_are_not_blocked(tmp_path, shared_datasets, tiny_model):
    from taxonomy_store.backend.writer_lock import WriterLock

    d = build_store(tmp_path / "store", shared_datasets, tiny_model, files=("xstest",), embed=True)
    before = exported(d, tmp_path)
    with WriterLock(d).hold("test: another writer"):
        for args in (["embed", "--encoder", TINY], ["verify", "--encoder", TINY, "--repair"], ["encoder", "remove", TINY]):
            t0 = time.monotonic()
            r = run_tstore("--store", str(d), *args, "--no-wait")
            assert_refused(r, f"another writer (pid {os.getpid()}: test: another writer", "--no-wait")
            assert r.returncode == 75 and time.monotonic() - t0 < 60
        # Readers never take the lock (this thread holds it: a reader here would not wait for it either way).
        r = run_tstore("--store", str(d), "verify", "--encoder", TINY)
        assert r.returncode == 0 and "ok" in r.stdout, r.stderr
        r = tstore_in_process("--store", str(d), "query", "--encoder", TINY, QUERY, "--json")
        assert r.returncode == 0, r.stderr
    assert exported(d, tmp_path) == before
    r = tstore_in_process("--store", str(d), "encoder", "list")
    assert TINY in r.stdout  # the refused remove removed nothing


def test_lock_is_one_holder_per_process_and_thread(tmp_path):
    import threading

    from taxonomy_store.errors import WriterBusy
    from taxonomy_store.backend.writer_lock import WriterLock

    lock = WriterLock(tmp_path)
    gen0 = lock.generation()
    with lock.hold("outer") as took:
        assert took
        with lock.hold("nested in the same thread") as again:  # verify --repair runs embed
            assert again is False
        seen: list[str] = []

        def other() -> None:
            try:
                with WriterLock(tmp_path).hold("other thread", wait=False):
                    seen.append("took it")
            except WriterBusy as exc:
                seen.append(exc.message)

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert seen == [f"another writer (pid {os.getpid()}: outer, since {lock.holder()['since'][11:19]} UTC) is writing to this store's vector index"]
    assert lock.generation() != gen0 and lock.holder() is None
    with WriterLock(tmp_path).hold("free again", wait=False) as took:
        assert took


def test_clients_opened_while_another_thread_reopens_never_fail(tmp_path):
    """A server polling for outside writes reopens its client while an embed in the same process
    opens one on the same path: chromadb's shared system registry raised KeyError (found in CI)."""
    import threading

    from taxonomy_store.backend.vector_index import VectorIndex
    from taxonomy_store.backend.writer_lock import WriterLock

    path = tmp_path / "chroma"
    errors: list[str] = []
    opened = [0, 0]

    def churn(slot: int) -> None:
        index = VectorIndex(path, WriterLock(tmp_path))
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and not errors:
            try:
                index.client.heartbeat()
                opened[slot] += 1
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            index.reopen()

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert min(opened) > 20  # both threads really opened (and forgot) many clients


# -- verify reads every vector back -------------------------------------------------------------------
_STALE_WRITER = r"""
import sys, numpy as np, chromadb
from chromadb.config import Settings
client = chromadb.PersistentClient(path=sys.argv[1], settings=Settings(anonymized_telemetry=False))
coll = client.get_collection(sys.argv[2], embedding_function=None)
coll.get(include=["embeddings"], limit=5)  # the collection's index is now in this process's memory
print("loaded", flush=True)
sys.stdin.readline()
rng = np.random.default_rng(0)
for i in range(10_000_000, 10_001_200, 400):  # ids of no prompt: orphans
    coll.upsert(ids=[str(x) for x in range(i, i + 400)], embeddings=rng.normal(size=(400, int(sys.argv[3]))))
print("written", flush=True)
"""


@pytest.mark.slow
def test_verify_finds_unreadable_vectors_and_repair_fixes_them(tmp_path, shared_datasets, tiny_model):
    """Make vectors unreadable on purpose, the way the race did: a writer with a stale index in memory
    (plain chromadb, outside the lock) writes after `tstore embed` wrote 2,264 vectors."""
    from taxonomy_store.store import Store
    from taxonomy_store.backend.vector_index import collection_name

    d = build_store(tmp_path / "store", shared_datasets, tiny_model, files=("xstest",), embed=True)
    with Store.open(d) as s:
        name = collection_name(s.encoders.get(TINY))
    stale = subprocess.Popen(
        [sys.executable, "-c", _STALE_WRITER, str(d / "chroma"), name, "32"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert stale.stdout.readline().strip() == "loaded"
    with Store.open(d) as s:
        for f in ("dna", "advbench", "alpaca"):
            import_shared(s, shared_datasets, f)
        assert s.embeddings.embed(TINY).embedded == 2264
    stale.stdin.write("go\n")
    stale.stdin.flush()
    assert stale.stdout.readline().strip() == "written"
    assert stale.wait(timeout=60) == 0

    n, bad = unreadable_ids(d)
    assert n == 2714 + 1200 and len(bad) >= 1000  # 2,000 on chromadb 1.5.9: two persisted blocks lost
    before = exported(d, tmp_path)
    r = run_tstore("--store", str(d), "verify", "--encoder", TINY, "--json")
    assert_refused(r, "disagree with SQL", "tstore verify --repair")
    report = json.loads(r.stdout)
    assert (report["unreadable"], report["orphaned"], report["wrong_dimension"]) == (len(bad), 1200, 0)
    assert report["examples"]["unreadable"] == sorted(bad)[:10]
    assert exported(d, tmp_path) == before  # verify without --repair changes nothing

    for args in (["query", QUERY], ["calibrate"]):  # a damaged index is an error and a hint, not a crash
        r = run_tstore("--store", str(d), *args, "--encoder", TINY)
        assert_refused(r, f"tstore verify --encoder {TINY} --repair")
    r = run_tstore("--store", str(d), "verify", "--encoder", TINY, "--repair", "--json")
    assert r.returncode == 0, r.stderr
    repaired = json.loads(r.stdout)["repaired"]
    assert (repaired["embedded"], repaired["deleted"]) == (len(bad), 1200)
    assert unreadable_ids(d) == (2714, [])
    r = run_tstore("--store", str(d), "verify", "--encoder", TINY)
    assert r.returncode == 0 and "ok" in r.stdout
    r = run_tstore("--store", str(d), "query", "--encoder", TINY, QUERY)
    assert r.returncode == 0, r.stderr
    assert exported(d, tmp_path) == before


def test_verify_finds_wrong_dimension_vectors_and_repair_fixes_them(tmp_path, shared_datasets, tiny_model):
    from taxonomy_store.store import Store
    from taxonomy_store.backend.vector_index import collection_name

    d = build_store(tmp_path / "store", shared_datasets, tiny_model, files=("xstest",), embed=True)
    with Store.open(d) as s:
        info = s.encoders.get(TINY)
        v = s.embeddings.vectors
        coll = v.collection(info, create=False)
        page = coll.get(include=["metadatas"])
        # Another model's 8-dimensional vectors under the same ids and metadata.
        v.client.delete_collection(collection_name(info))
        coll = v.collection(info)
        coll.upsert(ids=page["ids"], embeddings=np.ones((len(page["ids"]), 8)), metadatas=page["metadatas"])
    r = tstore_in_process("--store", str(d), "verify", "--encoder", TINY, "--json")
    assert_refused(r, "tstore verify --repair")
    report = json.loads(r.stdout)
    assert (report["wrong_dimension"], report["unreadable"], report["missing"]) == (450, 0, 0)
    r = tstore_in_process("--store", str(d), "verify", "--encoder", TINY, "--repair", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["repaired"]["embedded"] == 450, r.stderr
    with Store.open(d) as s:
        assert s.embeddings.verify(TINY).ok
        vs = s.embeddings.load_vectors(TINY)
        assert (len(vs), vs.dimension) == (450, 32)


# -- long-lived clients ------------------------------------------------------------------------------
@pytest.mark.slow
def test_long_lived_store_sees_an_outside_import_and_embed(tmp_path, shared_datasets, tiny_model):
    """Store A stays open (as in the TUI); another process imports and embeds 1,326 prompts; A's
    reads see them; A then embeds 938 more without losing the other process's vectors."""
    from taxonomy_store.store import Store

    d = build_store(tmp_path / "store", shared_datasets, tiny_model, files=("xstest",), embed=True)
    with Store.open(d) as a:
        first = a.guard.query([QUERY], encoder=TINY)[0]
        assert len(a.embeddings.load_vectors(TINY)) == 450
        for name, extra in (("advbench", ["--map", "text=goal", "--label", "unsafe"]), ("alpaca", ["--map", "text=instruction", "--label", "safe"])):
            src = "advbench_harmful_behaviors.csv" if name == "advbench" else "alpaca_eval_instructions.jsonl"
            r = run_tstore("--store", str(d), "import", str(shared_datasets / src), *extra)
            assert r.returncode == 0, r.stderr
        r = run_tstore("--store", str(d), "embed", "--encoder", TINY, "--json")
        assert r.returncode == 0 and json.loads(r.stdout)["embedded"] == 1326, r.stderr

        vs = a.embeddings.load_vectors(TINY)
        assert (len(vs), vs.missing) == (1776, 0)
        again = a.guard.query([QUERY], encoder=TINY)[0]
        assert again.to_dict()["neighbours"] and first.to_dict()["neighbours"]
        alpaca_text = a.curation.list_prompts(dataset="alpaca_eval_instructions", limit=1)[0].text
        hit = a.guard.query([alpaca_text], encoder=TINY, k=1)[0].to_dict()["neighbours"][0]
        assert hit["text"] == alpaca_text  # a prompt embedded by the other process is found

        import_shared(a, shared_datasets, "dna")
        assert a.embeddings.embed(TINY).embedded == 938
        a.embeddings.reopen()  # what the TUI's F5 calls
        assert a.embeddings.verify(TINY).ok
    assert unreadable_ids(d) == (2714, [])


# -- a lost Chroma server ----------------------------------------------------------------------------
def _start_chroma(path: Path, port: int, log: Path) -> subprocess.Popen:
    exe = Path(sys.executable).parent / "chroma"
    need_or_skip(exe.is_file(), f"no `chroma` command next to {sys.executable}")
    proc = subprocess.Popen(
        [str(exe), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=dict(os.environ, ANONYMIZED_TELEMETRY="False"),
    )
    url = f"http://127.0.0.1:{port}"
    _wait_for(lambda: _chroma_alive(url) or proc.poll() is not None, 90, "chroma run")
    assert _chroma_alive(url), log.read_text()
    return proc


@pytest.mark.slow
@pytest.mark.chroma_server
def test_chroma_server_killed_mid_embed_is_an_error_and_a_rerun_resumes(tmp_path, shared_datasets, tiny_model):
    from sqlalchemy import func, select

    from taxonomy_store.db.models import Embedding
    from taxonomy_store.store import Store, init_store

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = _start_chroma(tmp_path / "chroma", port, tmp_path / "chroma.log")
    try:
        d = tmp_path / "store"
        init_store(d, chroma_url=url).close()
        build_store(d, shared_datasets, tiny_model, files=("xstest", "dna", "advbench"))
        err = tmp_path / "embed.err"
        embed = _tstore_bg("--store", str(d), "embed", "--encoder", TINY, "--batch-size", "16", stderr_path=err)
        with Store.open(d) as s:

            def some_written() -> bool:
                with s.session() as ss:
                    return (ss.scalar(select(func.count()).select_from(Embedding)) or 0) > 0

            _wait_for(some_written, 300, "the first batch")
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        embed.wait(timeout=300)
        stderr = err.read_text()
        assert embed.returncode != 0 and "Traceback" not in stderr, stderr
        assert f"error: lost the Chroma server at {url}" in stderr and f"hint: start the server at {url} again" in stderr, stderr

        r = run_tstore("--store", str(d), "query", "--encoder", TINY, QUERY)
        assert_refused(r, url)  # with the server down: error and hint naming it, no traceback

        server = _start_chroma(tmp_path / "chroma", port, tmp_path / "chroma.log")
        r = run_tstore("--store", str(d), "embed", "--encoder", TINY, "--json")
        assert r.returncode == 0, r.stderr
        again = json.loads(r.stdout)["embedded"]
        assert 0 < again < 1909  # it resumed: the batches written before the kill were kept
        r = run_tstore("--store", str(d), "verify", "--encoder", TINY)
        assert r.returncode == 0 and "unreadable 0" in r.stdout, r.stdout + r.stderr
    finally:
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=30)


# -- the kNN graph cache -----------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_damaged_knn_cache_is_a_miss_recomputed_and_rewritten(tmp_path, shared_datasets, tiny_model, damage):
    d = build_store(tmp_path / "store", shared_datasets, tiny_model, files=("xstest", "dna"), embed=True)
    r = tstore_in_process("--store", str(d), "metrics", "detect", "--encoder", TINY, "--json")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout.splitlines()[0])
    [cache] = list((d / "cache").glob("knn_*detect*.npz"))
    data = cache.read_bytes()
    cache.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    r = tstore_in_process("--store", str(d), "metrics", "detect", "--encoder", TINY, "--json")
    assert r.returncode == 0 and "Traceback" not in r.stderr and "aborted" not in r.stderr, r.stderr
    again = json.loads(r.stdout.splitlines()[0])
    assert again["values"] == first["values"]
    assert cache.read_bytes() == data  # rewritten whole
