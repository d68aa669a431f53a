"""Issue 20 items 3 and 10 (adapt): never replace a folder, a relocatable store, normal file
modes, stale partial folders cleaned, clear `encoder export` errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from taxonomy_store.backend.model_folders import fingerprint
from taxonomy_store.errors import EncoderError
from taxonomy_store.store import Store

from conftest import run_tstore
from test_adapt import demo_store_dir, tiny_model  # noqa: F401  (fixtures)


@pytest.fixture
def quick_train(monkeypatch):
    """Training is not the point here (test_adapt.py trains for real): the "trained" model is a
    copy of FROM's folder, written where training writes it, with a private mode as a trained
    folder in a mkdtemp folder has."""
    import taxonomy_store.adapt.adaptation as adapting

    def copy(model_dir, data, cfg, out_dir, progress=None, **kwargs):
        shutil.copytree(model_dir, out_dir)
        for p in [Path(out_dir), *Path(out_dir).rglob("*")]:
            os.chmod(p, 0o700 if p.is_dir() else 0o600)
        return {"steps": 1, "method": "copy (test)"}

    monkeypatch.setattr(adapting, "train", copy)


def test_adapt_refuses_an_existing_folder_and_keeps_what_is_in_it(demo_store_dir, tiny_model, quick_train):  # noqa: F811
    z = demo_store_dir / "models" / "z"
    shutil.copytree(tiny_model, z)
    (z / "notes.txt").write_text("mine")
    s = Store.open(demo_store_dir)
    try:
        y = s.encoders.add("y", z)  # another encoder uses these weights
        with pytest.raises(EncoderError, match=r"models/z already exists; adapt never replaces a folder") as err:
            s.adaptation.adapt("tiny", "z", epochs=1, max_steps=1)
        assert "pick another --name" in err.value.hint
        assert (z / "notes.txt").read_text() == "mine"
        assert fingerprint(s.encoders.get("y").model_path) == y.fingerprint
        assert "z" not in [e.name for e in s.encoders.list()]
        assert y.model_ref == "store:models/z"  # a folder inside the store is stored relative to it
    finally:
        s.close()
    r = run_tstore("--store", str(demo_store_dir), "adapt", "--from", "tiny", "--name", "z", "--max-steps", "1")
    assert r.returncode == 1 and "already exists; adapt never replaces a folder" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.model  # encodes with the tuned model
def test_adapted_model_is_relocatable_readable_and_cleans_stale_partials(demo_store_dir, tmp_path, quick_train):  # noqa: F811
    models = demo_store_dir / "models"
    models.mkdir(exist_ok=True)
    stale = models / ".partial-tiny-move-abcd1234"
    (stale / "model").mkdir(parents=True)
    other = models / ".partial-tiny-move-x-abcd1234"  # another name's: left alone
    other.mkdir()
    old = os.umask(0o022)
    try:
        s = Store.open(demo_store_dir)
        try:
            s.adaptation.adapt("tiny", "tiny-move", epochs=1, max_steps=1)
            info = s.encoders.get("tiny-move")
        finally:
            s.close()
    finally:
        os.umask(old)
    assert info.model_ref == "store:models/tiny-move"
    folder = models / "tiny-move"
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == 0o644
    assert folder.stat().st_mode & 0o777 == 0o755
    assert not stale.exists() and other.exists()
    shutil.rmtree(other)
    # A copy of the store uses its own copy of the model, even with the original's folder gone.
    copy = tmp_path / "copy"
    shutil.copytree(demo_store_dir, copy, symlinks=True)
    moved_away = tmp_path / "gone"
    folder.rename(moved_away)
    try:
        c = Store.open(copy)
        try:
            got = c.encoders.get("tiny-move")
            assert got.model_path == (copy / "models" / "tiny-move").resolve()
            assert fingerprint(got.model_path) == info.fingerprint
            assert c.embeddings.live_encoder(c.encoders.get("tiny-move")).encode(["a text"]).shape == (1, 32)
        finally:
            c.close()
    finally:
        moved_away.rename(folder)


def test_encoder_export_to_a_symlinked_non_directory_is_a_clear_error(demo_store_dir, tmp_path):  # noqa: F811
    env = {"TSTORE_HOME": str(demo_store_dir)}
    (tmp_path / "file").write_text("x")
    (tmp_path / "to-file").symlink_to(tmp_path / "file")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for target, says in ((tmp_path / "dangling", "is a symbolic link to something that is not a directory"),
                         (tmp_path / "file" / "sub", "is not a directory"),
                         (tmp_path / "to-file" / "sub", "is not a directory")):
        r = run_tstore("encoder", "export", "tiny", str(target), env=env)
        assert r.returncode != 0 and says in r.stderr, (target, r.stderr)
        assert "Traceback" not in r.stderr and "NotADirectoryError" not in r.stderr
    assert (tmp_path / "file").read_text() == "x" and (tmp_path / "dangling").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "file", "to-file"]
