"""`tstore serve` as users run it: the real process, the real model, the official `openai` client,
and PostgreSQL + a Chroma server behind two server processes that answer identically.

The demo set embedded with all-MiniLM-L6-v2 and calibrated, once per store kind.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from conftest import run_tstore
from serve_helpers import chunks, demo_texts, serving_process

pytestmark = pytest.mark.slow
TOKEN = "real-test-token-9f2c"


def _demo(path, **where):
    from taxonomy_store.store import init_store
    from taxonomy_store.workflows.demo import DEMO_FILES, demo_dir

    store = init_store(path, **where)
    try:
        for name in ("do-not-answer", "xstest-pair-types"):
            store.taxonomies.load(name)
        for filename, dataset, options in DEMO_FILES:
            store.imports.import_file(demo_dir() / filename, dataset=dataset, **options)
        store.embeddings.embed("minilm")
        store.guard.calibrate("minilm")
    finally:
        store.close()
    return path


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory):
    return _demo(tmp_path_factory.mktemp("serve_real") / "store")


def _query_all(base, texts, token=None, sizes=(1, 4, 2, 8, 1, 3)):
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def ask(part):
        r = httpx.post(base + "/v1/query", json={"input": part}, headers=headers, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()["results"]

    with ThreadPoolExecutor(8) as pool:
        return [d for part in pool.map(ask, chunks(texts, list(sizes))) for d in part]


def test_served_verdicts_are_tstore_query_json_and_the_openai_client_agrees(sqlite_store, tmp_path):
    from openai import OpenAI

    texts = demo_texts(300)
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    cli = run_tstore("--store", str(sqlite_store), "query", "--json", "--file", str(tmp_path / "texts.txt"))
    assert cli.returncode == 0, cli.stderr
    expected = [json.loads(line) for line in cli.stdout.splitlines()]
    assert len(expected) == 300 and len({e["verdict"] for e in expected}) == 3

    with serving_process(["--store", str(sqlite_store)], token=TOKEN) as (base, _proc, log_path):
        served = _query_all(base, texts, token=TOKEN)
        client = OpenAI(base_url=base + "/v1", api_key=TOKEN, timeout=120, max_retries=0)
        moderation = client.moderations.create(input=texts[:60])
        with pytest.raises(Exception) as denied:
            OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0).moderations.create(input="hi")
    assert [d["verdict"] for d in served] == [e["verdict"] for e in expected]
    assert [d["unsafe_score"] for d in served] == pytest.approx([e["unsafe_score"] for e in expected], abs=1e-5)
    assert [[n["prompt_id"] for n in d["neighbours"]] for d in served][:50] == [[n["prompt_id"] for n in e["neighbours"]] for e in expected][:50]
    assert moderation.model == "minilm" and len(moderation.results) == 60
    assert [r.flagged for r in moderation.results] == [e["verdict"] == "unsafe" for e in expected[:60]]
    assert getattr(denied.value, "status_code", None) == 401
    log = log_path.read_text(errors="replace")
    assert "POST /v1/query 200" in log and texts[7] not in log  # lengths and verdicts are logged, texts never


def _assert_close(a, b, tol: float = 1e-5, where: str = "") -> None:
    """Equal JSON, floats within tol: every verdict, neighbour, category and reason the same."""
    if isinstance(a, float) and isinstance(b, float):
        assert abs(a - b) <= tol, f"{where}: {a} != {b}"
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_close(a[key], b[key], tol, f"{where}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, tol, f"{where}[{i}]")
    elif isinstance(a, str) and isinstance(b, str) and a != b:
        # a reason quotes scores to 3 decimals: equal but for a rounding step
        assert a.split(":")[0] == b.split(":")[0], f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.postgres
@pytest.mark.chroma_server
def test_two_servers_on_postgres_and_a_chroma_server_answer_identically(tmp_path_factory, pg_url, chroma_server_url):
    path = _demo(tmp_path_factory.mktemp("serve_pg") / "store", db_url=pg_url, chroma_url=chroma_server_url)
    texts = demo_texts(120)
    args = ["--store", str(path)]
    with serving_process(args) as (one, _p1, _l1), serving_process(args) as (two, _p2, _l2):
        first = _query_all(one, texts)
        second = _query_all(two, texts, sizes=(5, 1, 2))
        info = [httpx.get(b + "/v1/info", timeout=30).json()["snapshot"] for b in (one, two)]
    # requests were cut differently (so `index`, the place in its request, differs) and batched
    # differently (so floats may differ in the last digits): everything else is the same
    _assert_close([dict(d, index=0) for d in first], [dict(d, index=0) for d in second])
    assert info[0]["data_revision"] == info[1]["data_revision"] and info[0]["prompts"] == 620
    from taxonomy_store.store import Store

    with Store.open(path) as store:
        expected = store.guard.query(texts)
    assert [d["verdict"] for d in first] == [e.verdict for e in expected]
    assert [d["unsafe_score"] for d in first] == pytest.approx([e.unsafe_score for e in expected], abs=1e-5)
