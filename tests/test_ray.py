"""`--ray ADDRESS` against a real Ray cluster on loopback (a head and two workers: `ray_cluster`).

`embed --ray` encodes on the workers while this process writes: the same rows and vectors as a
local embed, resumable as it is. `metrics --ray` shards the exact self-kNN graph: the same graph,
bit for bit, and so the same CP and separation tables as a local run.
"""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest

from conftest import plant_hashing_encoder, tstore_in_process
from taxonomy_store.errors import ClusterUnavailable
from taxonomy_store.metrics.similarity import knn, normalise

HASHING = "hashing:64"


def _store_with(path, files, encoder=HASHING, name="h64"):
    """A store with the Do-Not-Answer and XSTest pair-type taxonomies and these files, not embedded."""
    from taxonomy_store.store import init_store

    with init_store(path) as s:
        if encoder is not None:  # None: the store's own minilm
            plant_hashing_encoder(s, name, encoder)
        for taxonomy in ("do-not-answer", "xstest-pair-types"):
            s.taxonomies.load(taxonomy)
        for f in files:
            s.imports.import_file(f)
    return path


@pytest.fixture(scope="module")
def unembedded(tmp_path_factory, shared_datasets):
    files = [shared_datasets / "do_not_answer.csv", shared_datasets / "xstest_prompts.csv", shared_datasets / "xstest_aug.csv"]
    return _store_with(tmp_path_factory.mktemp("ray") / "store", files)


def _copy(src, dst):
    return shutil.copytree(src, dst)


def _vectors(path, encoder="h64"):
    from taxonomy_store.store import Store

    with Store.open(path) as s:
        vs = s.embeddings.load_vectors(encoder)
        report = s.embeddings.verify(encoder)
    return vs, report


def _tstore(*args):
    r = tstore_in_process(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


def test_sharded_knn_is_the_local_graph_bit_for_bit(ray_cluster):
    """Blocks of rows against all vectors, on the cluster: the same indices and float64 similarities
    as `knn`, ties (many duplicated vectors) to the lower row."""
    from taxonomy_store.distributed.cluster import RayCluster
    from taxonomy_store.distributed.topk import RayTopK

    rng = np.random.default_rng(7)
    x = np.round(rng.normal(size=(1500, 24)), 1).astype(np.float32)
    x[::9] = x[3]  # exact ties
    x = normalise(x)
    want_idx, want_sims = knn(x, 25, assume_normalised=True)
    seen: list[tuple[int, int]] = []
    idx, sims = RayTopK(RayCluster(ray_cluster.address), block_rows=200)(x, 25, progress=lambda d, t: seen.append((d, t)),
                                                                         assume_normalised=True)
    assert seen[-1] == (8, 8)  # eight blocks, each a task
    assert idx.dtype == want_idx.dtype and sims.dtype == want_sims.dtype
    assert np.array_equal(idx, want_idx) and np.array_equal(sims, want_sims)
    assert idx.shape == (1500, 25)


def test_embed_on_ray_writes_what_a_local_embed_writes(ray_cluster, unembedded, tmp_path):
    local, remote = _copy(unembedded, tmp_path / "local"), _copy(unembedded, tmp_path / "remote")
    r_local = json.loads(_tstore("embed", "--encoder", "h64", "--json", "--store", str(local)).stdout)
    r_remote = json.loads(_tstore("embed", "--encoder", "h64", "--ray", ray_cluster.address, "--json", "--store", str(remote)).stdout)
    assert r_remote["embedded"] == r_local["embedded"] > 1000
    (lv, lrep), (rv, rrep) = _vectors(local), _vectors(remote)
    assert lrep.ok and rrep.ok and rv.missing == 0
    assert np.array_equal(lv.prompt_ids, rv.prompt_ids)
    np.testing.assert_allclose(rv.vectors, lv.vectors, rtol=0, atol=1e-6)
    # Nothing left to do, and the cluster is not asked again.
    again = json.loads(_tstore("embed", "--encoder", "h64", "--ray", ray_cluster.address, "--json", "--store", str(remote)).stdout)
    assert again["embedded"] == 0 and again["unchanged"] == r_local["embedded"]


def test_embed_on_ray_resumes_after_a_failed_write(ray_cluster, unembedded, tmp_path, monkeypatch):
    """The writer dies after two batches: a re-run encodes only the rest, and ends where a local embed does."""
    from taxonomy_store.backend.vector_index import VectorIndex
    from taxonomy_store.store import Store

    path = _copy(unembedded, tmp_path / "remote")
    real_upsert, calls = VectorIndex.upsert, []

    def upsert_then_die(self, *a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        return real_upsert(self, *a, **kw)

    monkeypatch.setattr(VectorIndex, "upsert", upsert_then_die)
    with Store.open(path) as s:
        s.use_ray(ray_cluster.address)
        with pytest.raises(OSError, match="simulated"):
            s.embeddings.embed("h64", batch_size=100)
        total = len(s.embeddings._sql_state(s.encoders.get("h64"))[0])
    monkeypatch.setattr(VectorIndex, "upsert", real_upsert)
    with Store.open(path) as s:
        s.use_ray(ray_cluster.address)
        summary = s.embeddings.embed("h64", batch_size=100)
    assert summary.embedded == total - 200  # two batches were written before the failure
    local = _copy(unembedded, tmp_path / "local")
    _tstore("embed", "--encoder", "h64", "--store", str(local))
    (lv, _), (rv, rrep) = _vectors(local), _vectors(path)
    assert rrep.ok and np.array_equal(lv.prompt_ids, rv.prompt_ids)
    np.testing.assert_allclose(rv.vectors, lv.vectors, rtol=0, atol=1e-6)


def _tables(path, *extra):
    out = {}
    for metric in ("cp", "separation"):
        r = json.loads(_tstore("metrics", metric, "--encoder", "h64", "--json", "--store", str(path), *extra).stdout.splitlines()[0])
        out[metric] = {"values": r["values"], "primary": (r["primary_name"], r["primary_value"]),
                       "details": {k: v for k, v in r["details"].items() if "seconds" not in k and k != "graph"}}
    return out


def test_metrics_on_ray_equal_a_local_run(ray_cluster, unembedded, tmp_path, monkeypatch):
    from taxonomy_store.distributed.topk import RayTopK

    base = _copy(unembedded, tmp_path / "base")
    _tstore("embed", "--encoder", "h64", "--store", str(base))
    local, remote = _copy(base, tmp_path / "local"), _copy(base, tmp_path / "remote")
    calls = []
    real_call = RayTopK.__call__
    monkeypatch.setattr(RayTopK, "__call__", lambda self, x, k, **kw: calls.append(x.shape) or real_call(self, x, k, **kw))
    want = _tables(local)
    assert calls == []
    got = _tables(remote, "--ray", ray_cluster.address)
    assert calls and calls[0][0] > 900  # the graph of the categorised prompts was computed on the cluster
    assert got == want
    assert want["cp"]["primary"][1] is not None and want["separation"]["values"]


def test_a_wrong_address_is_a_clear_error(tmp_path, unembedded):
    path = _copy(unembedded, tmp_path / "s")
    r = tstore_in_process("embed", "--encoder", "h64", "--ray", "  ", "--store", str(path))
    assert r.returncode != 0 and "--ray needs the address of a Ray head" in r.stderr


def test_an_address_nobody_listens_on_fails_at_once(tmp_path, unembedded):
    import socket
    import time

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = _copy(unembedded, tmp_path / "s")
    t0 = time.monotonic()
    r = tstore_in_process("embed", "--encoder", "h64", "--ray", f"127.0.0.1:{port}", "--store", str(path))
    assert r.returncode != 0 and f"nothing answers on 127.0.0.1:{port}" in r.stderr
    assert time.monotonic() - t0 < 30  # ray.init alone kept retrying for minutes


def test_without_the_extra_ray_is_named_with_the_fix(monkeypatch):
    from taxonomy_store.distributed.cluster import RayCluster

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ClusterUnavailable) as exc:
        RayCluster("127.0.0.1:6379").ray()
    assert "not installed" in exc.value.message and "taxonomy-store[ray]" in (exc.value.hint or "")


@pytest.mark.model
def test_embed_on_ray_with_real_minilm(ray_cluster, shared_datasets, tmp_path):
    """The real model on the workers (each loads it once): the vectors a local minilm embed writes."""
    unembedded = _store_with(tmp_path / "u", [shared_datasets / "xstest_prompts.csv"], encoder=None)
    local, remote = _copy(unembedded, tmp_path / "local"), _copy(unembedded, tmp_path / "remote")
    _tstore("embed", "--encoder", "minilm", "--store", str(local))
    r = json.loads(_tstore("embed", "--encoder", "minilm", "--ray", ray_cluster.address, "--json", "--store", str(remote)).stdout)
    assert r["embedded"] == 450
    (lv, _), (rv, rrep) = _vectors(local, "minilm"), _vectors(remote, "minilm")
    assert rrep.ok and np.array_equal(lv.prompt_ids, rv.prompt_ids)
    np.testing.assert_allclose(rv.vectors, lv.vectors, rtol=0, atol=1e-5)


def test_a_workers_encoder_error_reaches_the_caller_as_itself(ray_cluster, unembedded, tmp_path):
    """The actor checks the registered fingerprint where it opens the encoder: a mismatch there is the
    same one-line error a local embed gives, and nothing is written."""
    from sqlalchemy import update

    from taxonomy_store.db.models import Encoder
    from taxonomy_store.store import Store

    path = _copy(unembedded, tmp_path / "s")
    with Store.open(path) as s:
        with s.db.write(reason="test: another hashing scheme") as (session, _audit):
            session.execute(update(Encoder).where(Encoder.name == "h64").values(fingerprint="0" * 64))
    r = tstore_in_process("embed", "--encoder", "h64", "--ray", ray_cluster.address, "--store", str(path))
    assert r.returncode == 1
    assert "error: encoder 'h64' was registered with another version of the hashing scheme" in r.stderr
    with Store.open(path) as s:
        report = s.embeddings.verify("h64")
    assert report.vectors == 0 and report.missing == report.prompts > 1000
