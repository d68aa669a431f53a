"""The embed / verify scenarios of test_embed.py against a real `chroma run` server (HttpClient).

The server comes from the `chroma_server_url` fixture: TSTORE_TEST_CHROMA_URL (started by
.ci/run) or a `chroma run` of our own on loopback. In CI a missing server fails these tests.
"""

from __future__ import annotations

import pytest

from conftest import run_tstore, use_hashing_encoder
from test_embed import make_dataset_store, run_incremental_scenario, run_kill_scenario, run_tamper_and_repair

pytestmark = pytest.mark.chroma_server


@pytest.fixture(scope="module")
def server_store(tmp_path_factory, shared_datasets, chroma_server_url):
    from taxonomy_store.store import init_store

    store = init_store(tmp_path_factory.mktemp("embed_server") / "store", chroma_url=chroma_server_url)
    use_hashing_encoder(store)  # as in test_embed: the scenarios are about Chroma and the bookkeeping
    ids = make_dataset_store(store, shared_datasets)
    yield store, ids
    store.close()


def test_server_client_is_http_and_nothing_lands_in_the_store_dir(server_store):
    import chromadb

    store, _ = server_store
    assert isinstance(store.embeddings.vectors.client, chromadb.api.ClientAPI)
    assert type(store.embeddings.vectors.client).__name__ != "PersistentClient"
    assert store.embeddings.vectors.client.heartbeat() > 0
    assert not store.chroma_path.exists()


def test_incremental_embed_on_a_chroma_server(server_store):
    store, ids = server_store
    run_incremental_scenario(store, ids)
    assert not store.chroma_path.exists()  # everything went to the server


def test_verify_and_repair_on_a_chroma_server(server_store):
    store, _ = server_store
    if store.embeddings.verify("minilm").vectors == 0:
        store.embeddings.embed()
    run_tamper_and_repair(store)


def test_two_stores_share_a_server_without_mixing(tmp_path, shared_datasets, chroma_server_url, server_store):
    from taxonomy_store.store import init_store
    from test_embed import add_prompts, xstest_items

    first, _ = server_store
    if first.embeddings.verify("minilm").vectors == 0:  # the fixture's store, embedded whatever ran before
        first.embeddings.embed()
    other = init_store(tmp_path / "other", chroma_url=chroma_server_url)
    use_hashing_encoder(other)
    add_prompts(other, xstest_items(shared_datasets, 5), "xstest")
    assert other.embeddings.embed().embedded == 5
    assert other.embeddings.verify("minilm").vectors == 5
    assert first.embeddings.verify("minilm").vectors > 5
    assert other.embeddings.verify().ok and first.embeddings.verify().ok
    other.close()


def test_sigkill_mid_embed_on_a_chroma_server(tmp_path, shared_datasets, chroma_server_url):
    run_kill_scenario(tmp_path, shared_datasets, chroma_url=chroma_server_url)


def test_unreachable_server_is_a_clear_error(tmp_path):
    from taxonomy_store.store import init_store

    init_store(tmp_path / "s").close()
    r = run_tstore("--store", str(tmp_path / "s"), "--chroma-url", "http://127.0.0.1:9", "verify")
    assert r.returncode == 1
    assert "error: cannot use Chroma at http://127.0.0.1:9" in r.stderr
    assert "hint: start the server" in r.stderr
