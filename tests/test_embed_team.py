"""Issue 20 item 5: writers on a shared store (PostgreSQL + a Chroma server) coordinate.

Three `tstore embed` at once on a team store: one encodes, the others wait for it (a PostgreSQL
advisory lock) and then find nothing left to do. No failure, every prompt encoded once (the
encoder calls are counted), every vector readable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from taxonomy_store.store import Store, init_store

pytestmark = pytest.mark.chroma_server

COUNTING = str(Path(__file__).with_name("counting_tstore.py"))


def _start(store_dir: Path, log: Path, *args: str) -> subprocess.Popen:
    env = dict(os.environ, TSTORE_TEST_ENCODE_LOG=str(log), TSTORE_HOME=str(store_dir))
    return subprocess.Popen([sys.executable, COUNTING, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_three_concurrent_embeds_encode_each_prompt_once(tmp_path, shared_datasets, pg_url, chroma_server_url):
    store_dir = tmp_path / "team"
    s = init_store(store_dir, db_url=pg_url, chroma_url=chroma_server_url)
    s.imports.import_file(shared_datasets / "xstest_prompts.csv")  # 450 prompts
    n = len(s.exports.prompt_rows())
    s.close()
    assert n == 450
    log = tmp_path / "encode.log"
    procs = [_start(store_dir, log, "embed", "--json") for _ in range(3)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        results.append((p.returncode, out, err))
    for rc, out, err in results:
        assert rc == 0, err
        assert "Traceback" not in err and "IntegrityError" not in err and "error" not in err.lower(), err
    embedded = sorted(json.loads(out.strip().splitlines()[-1])["embedded"] for _, out, _ in results)
    assert embedded == [0, 0, n]  # one did the work, two found nothing left
    calls = [line.split() for line in log.read_text().splitlines()]
    assert sum(int(k) for _, k in calls) == n  # every prompt through the encoder exactly once
    assert len({pid for pid, _ in calls}) == 1
    waited = [err for _, _, err in results if "waiting for another writer" in err]
    assert len(waited) >= 1
    s = Store.open(store_dir)
    try:
        vs = s.embeddings.load_vectors("minilm")
        assert len(vs) == n and vs.missing == 0
        assert np.allclose(np.linalg.norm(vs.vectors, axis=1), 1.0, atol=1e-4)
        assert s.embeddings.verify().ok
    finally:
        s.close()


def test_no_wait_on_a_team_store_says_who_writes(tmp_path, pg_url, chroma_server_url):
    from sqlalchemy import create_engine

    from taxonomy_store.backend.writer_lock import ADVISORY_KEY
    from taxonomy_store.errors import WriterBusy

    s = init_store(tmp_path / "team2", db_url=pg_url, chroma_url=chroma_server_url)
    other = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with other.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            assert conn.exec_driver_sql("SELECT pg_try_advisory_lock(%s)", (ADVISORY_KEY,)).scalar()
            t0 = time.perf_counter()
            with pytest.raises(WriterBusy, match=r"another writer \(PostgreSQL backend \d+"):
                s.embeddings.embed(wait=False)
            assert time.perf_counter() - t0 < 5
            conn.exec_driver_sql("SELECT pg_advisory_unlock(%s)", (ADVISORY_KEY,))
        assert s.embeddings.embed(wait=False).embedded == 0  # free again (an empty store)
    finally:
        other.dispose()
        s.close()
