"""SIGKILL `tstore import` in the middle of a large import: the store is exactly as before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from taxonomy_store.db.models import AuditEntry, Base
from taxonomy_store.store import Store, init_store


def _state(store_dir: Path) -> dict:
    store = Store.open(store_dir)
    try:
        with store.session() as s:
            counts = {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}
            audit = s.execute(select(func.max(AuditEntry.id), func.count(AuditEntry.id))).one()
            ok = s.execute(text("PRAGMA integrity_check")).scalar()
        return {"counts": counts, "audit": tuple(audit), "integrity": ok}
    finally:
        store.close()


@pytest.mark.subprocess
def test_sigkill_during_import_leaves_the_store_unchanged(tmp_path):
    store_dir = tmp_path / "store"
    store = init_store(store_dir)
    seed = tmp_path / "seed.csv"
    seed.write_text("text,label\nA prompt that was there before,unsafe\n", encoding="utf-8")
    store.imports.import_file(seed)
    store.close()
    before = _state(store_dir)

    big = tmp_path / "big.csv"
    with big.open("w", encoding="utf-8") as f:
        f.write("id,text,label\n")
        for i in range(200_000):
            f.write(f"r{i},Generated prompt number {i} about topic {i % 97} and case {i * 7919 % 100003},{'safe' if i % 2 else 'unsafe'}\n")

    wal = store_dir / "tstore.db-wal"
    exe = Path(sys.executable).parent / "tstore"
    env = dict(os.environ, TSTORE_NO_PROGRESS="1")
    proc = subprocess.Popen([str(exe), "--store", str(store_dir), "import", str(big)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    killed_while_writing = False
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            # Rows reach the WAL before the commit once the page cache spills: the import is mid-write.
            if wal.exists() and wal.stat().st_size > 2_000_000:
                os.kill(proc.pid, signal.SIGKILL)
                killed_while_writing = True
                break
            time.sleep(0.01)
    finally:
        if proc.poll() is None and not killed_while_writing:
            proc.kill()
        proc.wait()
    assert killed_while_writing, f"the import ended (rc={proc.returncode}) before it could be killed mid-write"
    assert proc.returncode == -signal.SIGKILL

    after = _state(store_dir)
    assert after == before
    assert after["integrity"] == "ok"

    # The store still works: a small import goes through.
    store = Store.open(store_dir)
    small = tmp_path / "small.csv"
    small.write_text("text,label\nA prompt added after the crash,safe\n", encoding="utf-8")
    assert store.imports.import_file(small).added == 1
    store.close()
